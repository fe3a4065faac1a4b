"""CloudWatch's shapes from botocore's model, and requests checked against them.

Every protocol decodes its body to plain values first (JSON and CBOR to maps and lists, the
query protocol's flat `A.member.1.B=...` form to the same tree, see `form_tree`); `check_input`
then walks the operation's input shape once for all of them: required members
(MissingParameter), types, lengths, enums, list sizes and number ranges
(InvalidParameterValue), with the member path in CloudWatch's query spelling
(`MetricDataQueries.member.1.Id`) so the message says which value to fix. Timestamps come out
as epoch seconds whatever the wire used (CBOR tag 1, JSON numbers, ISO 8601 text).
"""

from __future__ import annotations

import functools
import gzip
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from polyhost.control.schema import Schema, Shape, load_schema, model_path
from polyhost.errors import InvalidParameterValue, MissingParameter

SERVICE = "cloudwatch"
TARGET_PREFIX = "GraniteServiceVersion20100801"
API_VERSION = "2010-08-01"
XML_NAMESPACE = "http://monitoring.amazonaws.com/doc/2010-08-01/"
SMITHY_NAMESPACE = "com.amazonaws.cloudwatch"
OPERATIONS = ("ListMetrics", "GetMetricStatistics", "GetMetricData")

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_LATEST_TIMESTAMP = 253402300799.0  # 9999-12-31T23:59:59Z
_MAX_LIST_INDEX = 100_000


@dataclass(frozen=True)
class CloudWatchModel:
    schema: Schema
    all_operations: frozenset[str]
    error_shapes: Mapping[str, str]  # error code -> exception shape name

    def input(self, operation: str) -> Shape:
        shape = self.schema.input(operation)
        assert shape is not None
        return shape

    def output(self, operation: str) -> Shape:
        shape = self.schema.output(operation)
        assert shape is not None
        return shape


@functools.cache
def cloudwatch_model() -> CloudWatchModel:
    """Read once, on first use (about 30 ms), so a server that never serves CloudWatch pays
    nothing for it."""
    path = model_path(SERVICE)
    raw = path.read_bytes()
    model = json.loads(gzip.decompress(raw) if path.suffix == ".gz" else raw)
    errors = {
        str(shape.get("error", {}).get("code", name)): name
        for name, shape in model["shapes"].items()
        if shape.get("exception")
    }
    return CloudWatchModel(
        load_schema(OPERATIONS, path=path), frozenset(model["operations"]), errors
    )


def check_input(model: CloudWatchModel, operation: str, value: Any, textual: bool) -> Any:
    """`value` checked and typed against the operation's input shape.

    `textual`: scalars arrive as text (the query protocol) and are parsed.
    """
    if value is None:
        value = {}
    return _check(model.schema, model.input(operation), value, "", textual)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _kind(shape: Shape) -> str:
    return {"structure": "structure", "list": "list", "map": "map", "boolean": "boolean"}.get(
        shape.type, "number" if shape.type in ("integer", "long", "double", "float") else shape.type
    )


def _wrong(where: str, shape: Shape, value: Any) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"The parameter {where or 'request'} must be a {_kind(shape)}, not {type(value).__name__}."
    )


def _check(schema: Schema, shape: Shape, value: Any, where: str, textual: bool) -> Any:
    kind = shape.type
    if kind == "structure":
        if not isinstance(value, dict):
            raise _wrong(where, shape, value)
        out: dict[str, Any] = {}
        for name, member in shape.members.items():
            given = value.get(name)
            if given is None:
                if name in shape.required:
                    raise MissingParameter(f"The parameter {_join(where, name)} is required.")
                continue
            out[name] = _check(schema, schema.shape(member), given, _join(where, name), textual)
        return out
    if kind == "list":
        if not isinstance(value, list):
            raise _wrong(where, shape, value)
        _check_size(where, shape, len(value), "collection", "items")
        assert shape.member is not None
        element = schema.shape(shape.member)
        return [
            _check(schema, element, item, f"{where}.member.{i}", textual)
            for i, item in enumerate(value, 1)
        ]
    if kind == "map":
        if not isinstance(value, dict):
            raise _wrong(where, shape, value)
        assert shape.key is not None and shape.value is not None
        key_shape, value_shape = schema.shape(shape.key), schema.shape(shape.value)
        return {
            _check(schema, key_shape, k, f"{where}.entry.{i}.key", textual): _check(
                schema, value_shape, v, f"{where}.entry.{i}.value", textual
            )
            for i, (k, v) in enumerate(value.items(), 1)
        }
    if kind == "string":
        return _string(shape, value, where)
    if kind in ("integer", "long"):
        return _integer(shape, value, where, textual)
    if kind in ("double", "float"):
        return _double(shape, value, where, textual)
    if kind == "boolean":
        if textual and isinstance(value, str) and value in ("true", "false"):
            return value == "true"
        if not isinstance(value, bool):
            raise _wrong(where, shape, value)
        return value
    if kind == "timestamp":
        return _timestamp(value, where)
    raise InvalidParameterValue(f"The parameter {where} has a type polyhost does not read.")


def _check_size(where: str, shape: Shape, size: int, noun: str, unit: str) -> None:
    if shape.min is not None and size < shape.min:
        raise InvalidParameterValue(
            f"The {noun} {where} must have at least {shape.min:g} {unit}, not {size}."
        )
    if shape.max is not None and size > shape.max:
        raise InvalidParameterValue(
            f"The {noun} {where} must have at most {shape.max:g} {unit}, not {size}."
        )


def _string(shape: Shape, value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _wrong(where, shape, value)
    _check_size(where, shape, len(value), "parameter", "characters")
    if shape.enum is not None and value not in shape.enum:
        raise InvalidParameterValue(
            f"The value {value[:64]} for parameter {where} is not valid: it must be one of "
            f"{', '.join(shape.enum)}."
        )
    if shape.pattern is not None and re.match(shape.pattern, value) is None:
        raise InvalidParameterValue(
            f"The value {value[:64]} for parameter {where} does not match the pattern "
            f"{shape.pattern}."
        )
    return value


def _integer(shape: Shape, value: Any, where: str, textual: bool) -> int:
    if textual and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise _wrong(where, shape, value) from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(where, shape, value)
    low, high = _INT32 if shape.type == "integer" else _INT64
    if shape.min is not None:
        low = max(low, int(shape.min))
    if shape.max is not None:
        high = min(high, int(shape.max))
    if not low <= value <= high:
        shown = str(value) if len(str(value)) <= 30 else "out of range"
        raise InvalidParameterValue(
            f"The parameter {where} must be between {low} and {high}, not {shown}."
        )
    return value


def _double(shape: Shape, value: Any, where: str, textual: bool) -> float:
    if textual and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _wrong(where, shape, value) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _wrong(where, shape, value)
    if not math.isfinite(value):
        raise InvalidParameterValue(f"The parameter {where} must be a finite number.")
    return float(value)


def _timestamp(value: Any, where: str) -> float:
    """Epoch seconds from a datetime (CBOR tag 1), a number (JSON) or ISO 8601 text (query)."""
    if isinstance(value, datetime):
        epoch = (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        epoch = float(value)
    elif isinstance(value, str):
        epoch = _parse_time_text(value, where)
    else:
        raise InvalidParameterValue(
            f"The parameter {where} must be a timestamp, not {type(value).__name__}."
        )
    if not 0.0 <= epoch <= _LATEST_TIMESTAMP:
        raise InvalidParameterValue(
            f"The parameter {where} must be a time between 1970 and 9999 (UTC)."
        )
    return epoch


def _parse_time_text(text: str, where: str) -> float:
    stripped = text.strip()
    try:
        return float(stripped)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(stripped.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidParameterValue(
            f"The value {text[:64]} for parameter {where} is not a timestamp: use ISO 8601 "
            "UTC, e.g. 2024-10-03T23:00:00Z."
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


# -- the query protocol's flat form ---------------------------------------------------------------
_LEAF = ""


def form_tree(model: CloudWatchModel, operation: str, fields: Iterable[tuple[str, str]]) -> Any:
    """`Dimensions.member.1.Name=x` pairs as the nested maps and lists the other protocols
    send, following the input shape (lists are `.member.N`, 1-based; maps `.entry.N.key`)."""
    trie: dict[str, Any] = {}
    for key, value in fields:
        node = trie
        for part in key.split("."):
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {} if child is None else {_LEAF: child}
            node = child
        node[_LEAF] = value
    return _from_trie(model.schema, model.input(operation), trie, "")


def _from_trie(schema: Schema, shape: Shape, node: Any, where: str) -> Any:
    if not isinstance(node, dict):
        return node
    if shape.type == "structure":
        return {
            name: _from_trie(schema, schema.shape(member), node[name], _join(where, name))
            for name, member in shape.members.items()
            if name in node
        }
    if shape.type in ("list", "map"):
        entries = node.get("member" if shape.type == "list" else "entry")
        if not isinstance(entries, dict):
            return [] if node.get(_LEAF) == "" and shape.type == "list" else node.get(_LEAF, node)
        items = sorted(
            (_index(index, where), child) for index, child in entries.items() if index != _LEAF
        )
        if shape.type == "list":
            assert shape.member is not None
            element = schema.shape(shape.member)
            return [_from_trie(schema, element, child, f"{where}.member.{i}") for i, child in items]
        assert shape.key is not None and shape.value is not None
        out: dict[Any, Any] = {}
        for i, child in items:
            if isinstance(child, dict):
                key = _from_trie(schema, schema.shape(shape.key), child.get("key"), where)
                out[key] = _from_trie(
                    schema, schema.shape(shape.value), child.get("value"), f"{where}.entry.{i}"
                )
        return out
    return node.get(_LEAF)


def _index(text: str, where: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= _MAX_LIST_INDEX:
        raise InvalidParameterValue(
            f"The list {where} has an element numbered {text[:20]}: number elements 1, 2, 3..."
        )
    return int(text)
