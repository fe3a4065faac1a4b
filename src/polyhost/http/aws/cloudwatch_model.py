"""CloudWatch's shapes from botocore's model, and requests checked against them.

Every protocol decodes its body to plain values first (JSON and CBOR to maps and lists, the
query protocol's flat `A.member.1.B=...` form to the same tree, see `form_tree`); `check_input`
then walks the operation's input shape once for all of them: required members
(MissingParameter), types, lengths, enums, list sizes and number ranges
(InvalidParameterValue), with the member path in CloudWatch's query spelling
(`MetricDataQueries.member.1.Id`) so the message says which value to fix. Timestamps come out
as epoch seconds whatever the wire used (CBOR tag 1, JSON numbers, ISO 8601 text). The walk is
`polyhost.awsmodel.check`'s, shared with the other APIs; the words and error classes are
CloudWatch's, here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from polyhost.awsmodel.check import INT32, INT64, Checker, Dialect, Entry, Path, Violation
from polyhost.awsmodel.shapes import Schema, Shape, load_schema
from polyhost.errors import InvalidParameterValue, MissingParameter

SERVICE = "cloudwatch"
TARGET_PREFIX = "GraniteServiceVersion20100801"
API_VERSION = "2010-08-01"
XML_NAMESPACE = "http://monitoring.amazonaws.com/doc/2010-08-01/"
SMITHY_NAMESPACE = "com.amazonaws.cloudwatch"
OPERATIONS = (
    "ListMetrics",
    "GetMetricStatistics",
    "GetMetricData",
    # metric alarms (metrics/alarms.py)
    "PutMetricAlarm",
    "DescribeAlarms",
    "DescribeAlarmsForMetric",
    "DeleteAlarms",
    "SetAlarmState",
    "DescribeAlarmHistory",
    "EnableAlarmActions",
    "DisableAlarmActions",
)

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

    def has_output(self, operation: str) -> bool:
        """False for the operations that answer nothing (PutMetricAlarm, DeleteAlarms...)."""
        return self.schema.output(operation) is not None


@functools.cache
def cloudwatch_model() -> CloudWatchModel:
    """Read once, on first use (about 30 ms), so a server that never serves CloudWatch pays
    nothing for it."""
    schema = load_schema(SERVICE, OPERATIONS)
    return CloudWatchModel(schema, schema.all_operations, schema.error_shapes)


CLOUDWATCH = Dialect(first_only=True, integral_floats=True, time_range=(0.0, _LATEST_TIMESTAMP))


def check_input(model: CloudWatchModel, operation: str, value: Any, textual: bool) -> Any:
    """`value` checked and typed against the operation's input shape.

    `textual`: scalars arrive as text (the query protocol) and are parsed.
    """
    if value is None:
        value = {}
    typed, found = Checker(model.schema, CLOUDWATCH).check(model.input(operation), value, textual)
    if found:
        raise cloudwatch_error(found[0])
    return typed


def path_text(path: Path) -> str:
    """A member's path in CloudWatch's query spelling: `MetricDataQueries.member.1.Id`."""
    text = ""
    for step in path:
        if isinstance(step, Entry):
            text = f"{text}.entry.{step.index + 1}.{step.part}"
        elif isinstance(step, int):
            text = f"{text}.member.{step + 1}"
        else:
            text = _join(text, step)
    return text


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _kind(shape: Shape) -> str:
    return {"structure": "structure", "list": "list", "map": "map", "boolean": "boolean"}.get(
        shape.type, "number" if shape.type in ("integer", "long", "double", "float") else shape.type
    )


def _limits(shape: Shape) -> tuple[int, int]:
    low, high = INT32 if shape.type == "integer" else INT64
    if shape.min is not None:
        low = max(low, int(shape.min))
    if shape.max is not None:
        high = min(high, int(shape.max))
    return low, high


def cloudwatch_error(found: Violation) -> MissingParameter | InvalidParameterValue:
    """The error CloudWatch answers for a violation: MissingParameter for a required member,
    InvalidParameterValue for every other, naming the member by its query path."""
    if found.inner:
        return cloudwatch_error(found.inner[0])
    where = path_text(found.path)
    shape, value, kind = found.shape, found.value, found.kind
    if kind == "missing":
        return MissingParameter(f"The parameter {where} is required.")
    if kind in ("type", "null"):
        if shape.type == "timestamp":
            return InvalidParameterValue(
                f"The parameter {where} must be a timestamp, not {type(value).__name__}."
            )
        return InvalidParameterValue(
            f"The parameter {where or 'request'} must be a {_kind(shape)}, not "
            f"{type(value).__name__}."
        )
    if kind == "text":
        return InvalidParameterValue(f"The parameter {where} must be valid Unicode text.")
    if kind in ("length", "size"):
        noun, unit = ("parameter", "characters") if kind == "length" else ("collection", "items")
        if found.detail == "min":
            return InvalidParameterValue(
                f"The {noun} {where} must have at least {shape.min:g} {unit}, not {len(value)}."
            )
        return InvalidParameterValue(
            f"The {noun} {where} must have at most {shape.max:g} {unit}, not {len(value)}."
        )
    if kind == "enum":
        return InvalidParameterValue(
            f"The value {value[:64]} for parameter {where} is not valid: it must be one of "
            f"{', '.join(shape.enum or ())}."
        )
    if kind == "pattern":
        return InvalidParameterValue(
            f"The value {value[:64]} for parameter {where} does not match the pattern "
            f"{found.detail}."
        )
    if kind in ("bounds", "range") and shape.type in ("integer", "long"):
        low, high = _limits(shape)
        shown = str(value) if len(str(value)) <= 30 else "out of range"
        return InvalidParameterValue(
            f"The parameter {where} must be between {low} and {high}, not {shown}."
        )
    if kind == "range":
        bound = shape.min if found.detail == "min" else shape.max
        relation = "at least" if found.detail == "min" else "at most"
        return InvalidParameterValue(f"The parameter {where} must be {relation} {bound:g}.")
    if kind == "finite":
        return InvalidParameterValue(f"The parameter {where} must be a finite number.")
    if kind == "time" and isinstance(value, str) and found.detail != "range":
        return InvalidParameterValue(
            f"The value {value[:64]} for parameter {where} is not a timestamp: use ISO 8601 "
            "UTC, e.g. 2024-10-03T23:00:00Z."
        )
    if kind == "time":
        return InvalidParameterValue(
            f"The parameter {where} must be a time between 1970 and 9999 (UTC)."
        )
    return InvalidParameterValue(f"The parameter {where} has a value polyhost does not read.")


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
