"""Request validation driven by the service model: every violation of a request, in AWS's words.

botocore checks only required members, types and minimums on the client; SageMaker enforces
maximum lengths, patterns, enums and ranges on the server and reports *all* violations of a
request at once:

    2 validation errors detected: Value 'a_b' at 'modelName' failed to satisfy constraint:
    Member must satisfy regular expression pattern: ...; Value null at ... Member must not be null

Paths are camelCase and list elements read `productionVariants.1.member.variantName` (1-based),
as AWS writes them. Ill-typed values (a number where a string belongs, say), which botocore would
never send, get a violation of their own instead of a SerializationException, so a raw client
also learns everything that is wrong in one answer.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from polyhost.control.schema import Schema, Shape
from polyhost.errors import ValidationException

# Java regular expressions in the model that Python's `re` does not read as they are. The tag
# pattern's \p{L}\p{N} and `_` are exactly Python's \w (letters, numbers, underscore); \p{Z} is
# spelled out (space, line and paragraph separators).
_SEPARATORS = "\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
JAVA_PATTERNS = {
    "([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)": f"([\\w{_SEPARATORS}.:/=+\\-@]*)",
}

# Where polyhost accepts more than SageMaker: model data may also come from a local file.
PATTERN_OVERRIDES = {
    ("ContainerDefinition", "ModelDataUrl"): "(https|s3)://([^/]+)/?(.*)|file:///.*",
}

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_MAX_SHOWN = 256
_MAX_SHOWN_DEPTH = 16

_compiled: dict[str, re.Pattern[str] | None] = {}


def compiled(pattern: str) -> re.Pattern[str] | None:
    """The model's pattern as a Python regex (None if it cannot be read; then it is not checked)."""
    if pattern not in _compiled:
        try:
            _compiled[pattern] = re.compile(JAVA_PATTERNS.get(pattern, pattern))
        except re.error:
            _compiled[pattern] = None
    return _compiled[pattern]


def camel(member: str) -> str:
    """`ModelName` -> `modelName`, the way AWS names members in validation messages."""
    return member[:1].lower() + member[1:]


def join_path(parent: str, member: str) -> str:
    return f"{parent}.{camel(member)}" if parent else camel(member)


def element_path(parent: str, index: int) -> str:
    return f"{parent}.{index + 1}.member"


def show(value: Any) -> str:
    """A value as AWS prints it in a message (Java-like), cut short when long.

    Built with a budget: however large or deeply nested the value, only about `_MAX_SHOWN`
    characters are ever produced, and nesting past `_MAX_SHOWN_DEPTH` levels prints as `...`
    instead of recursing, so no request can make an error message costly or overflow the stack.
    """
    parts: list[str] = []
    _show(value, parts, _MAX_SHOWN + 1, 0)
    text = "".join(parts)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _show(value: Any, out: list[str], room: int, depth: int) -> int:
    """Append `value`'s text to `out`, about `room` characters at most; returns the room left."""
    if room <= 0:
        return room
    if isinstance(value, list | dict):
        if depth >= _MAX_SHOWN_DEPTH:
            out.append("[...]" if isinstance(value, list) else "{...}")
            return room - 5
        is_list = isinstance(value, list)
        out.append("[" if is_list else "{")
        room -= 1
        items = value[:20] if isinstance(value, list) else list(value.items())[:20]
        for index, item in enumerate(items):
            if room <= 0:
                return room
            if index:
                out.append(", ")
                room -= 2
            if is_list:
                room = _show(item, out, room, depth + 1)
            else:
                key, inner = item
                room = _show(key, out, room, depth + 1) - 1
                out.append("=")
                room = _show(inner, out, room, depth + 1)
        more = len(value) > 20
        tail = (", ...]" if more else "]") if is_list else (", ...}" if more else "}")
        out.append(tail)
        return room - len(tail)
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value[:room]
    else:
        text = str(value)[:room]
    out.append(text)
    return room - len(text)


def violation(value: Any, path: str, constraint: str) -> str:
    """One item of a validation message."""
    shown = "null" if value is None else f"'{show(value)}'"
    return f"Value {shown} at '{path}' failed to satisfy constraint: {constraint}"


MAX_LISTED = 100


def message(violations: list[str]) -> str:
    """AWS's summary; past MAX_LISTED items the rest is counted, not listed (keeps it short)."""
    count = len(violations)
    noun = "error" if count == 1 else "errors"
    listed = "; ".join(violations[:MAX_LISTED])
    if count > MAX_LISTED:
        listed += f"; and {count - MAX_LISTED} more"
    return f"{count} validation {noun} detected: {listed}"


def _too_long(shape: Shape, value: list[Any] | dict[str, Any]) -> bool:
    """Over its maximum size: the size violation says enough, elements are not walked."""
    return shape.max is not None and len(value) > shape.max


def raise_if_any(violations: list[str]) -> None:
    if violations:
        raise ValidationException(message(violations))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def parse_timestamp(value: Any) -> float | None:
    """Epoch seconds from a JSON timestamp (number, numeric string or ISO 8601), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        try:
            number = float(value)
            return number if math.isfinite(number) else None
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return None


def _valid_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape
        return False
    return True


class Validator:
    """Walks a request against its input shape and collects every violation."""

    def __init__(self, schema: Schema) -> None:
        self._schema = schema

    def check(self, shape: Shape, params: dict[str, Any]) -> list[str]:
        found: list[str] = []
        self._structure(shape, params, "", found)
        return found

    # -- by type ------------------------------------------------------------------------------
    def _value(
        self, shape: Shape, value: Any, path: str, found: list[str], pattern: str | None = None
    ) -> None:
        check = _CHECKS.get(shape.type)
        if check is not None:  # blobs and documents are not in the operations polyhost serves
            check(self, shape, value, path, found, pattern)

    def _structure(
        self, shape: Shape, value: Any, path: str, found: list[str], pattern: str | None = None
    ) -> None:
        if not isinstance(value, dict):
            found.append(violation(value, path, "Member must be a structure (a JSON object)"))
            return
        for member, target in shape.members.items():
            item = value.get(member)
            member_path = join_path(path, member)
            if item is None:
                if member in shape.required:
                    found.append(violation(None, member_path, "Member must not be null"))
                continue
            override = PATTERN_OVERRIDES.get((shape.name, member))
            self._value(self._schema.shape(target), item, member_path, found, override)

    def _list(
        self, shape: Shape, value: Any, path: str, found: list[str], pattern: str | None = None
    ) -> None:
        if not isinstance(value, list):
            found.append(violation(value, path, "Member must be a list (a JSON array)"))
            return
        self._size(shape, value, path, found)
        if shape.member is None or _too_long(shape, value):
            return
        element = self._schema.shape(shape.member)
        for index, item in enumerate(value):
            item_path = element_path(path, index)
            if item is None:
                found.append(violation(None, item_path, "Member must not be null"))
            else:
                self._value(element, item, item_path, found)

    def _map(
        self, shape: Shape, value: Any, path: str, found: list[str], pattern: str | None = None
    ) -> None:
        if not isinstance(value, dict):
            found.append(violation(value, path, "Member must be a map (a JSON object)"))
            return
        self._size(shape, value, path, found)
        if _too_long(shape, value):
            return
        key_shape = self._schema.shape(shape.key) if shape.key else None
        value_shape = self._schema.shape(shape.value) if shape.value else None
        for key, item in value.items():
            if key_shape is not None:
                problems: list[str] = []
                self._value(key_shape, key, path, problems)
                if problems:
                    constraints = ", ".join(p.split("constraint: ", 1)[1] for p in problems)
                    found.append(
                        violation(key, path, f"Map keys must satisfy constraint: [{constraints}]")
                    )
            if value_shape is None:
                continue
            if item is None:
                found.append(violation({key: None}, path, "Map value must not be null"))
                continue
            if value_shape.type in ("structure", "list", "map"):
                self._value(value_shape, item, f"{path}.{key}", found)
                continue
            problems = []
            self._value(value_shape, item, path, problems)
            if problems:
                constraints = ", ".join(p.split("constraint: ", 1)[1] for p in problems)
                found.append(
                    violation(
                        {key: item}, path, f"Map value must satisfy constraint: [{constraints}]"
                    )
                )

    def _string(
        self, shape: Shape, value: Any, path: str, found: list[str], pattern: str | None = None
    ) -> None:
        if not isinstance(value, str):
            found.append(violation(value, path, "Member must be a string"))
            return
        if not _valid_text(value):
            found.append(violation(value, path, "Member must be valid Unicode text"))
            return
        if shape.enum is not None and value not in shape.enum:
            found.append(
                violation(
                    value,
                    path,
                    "Member must satisfy enum value set: [" + ", ".join(shape.enum) + "]",
                )
            )
            return
        self._size(shape, value, path, found)
        expected = pattern or shape.pattern
        if expected:
            regex = compiled(expected)
            if regex is not None and regex.fullmatch(value) is None:
                found.append(
                    violation(
                        value, path, f"Member must satisfy regular expression pattern: {expected}"
                    )
                )

    def _integer(
        self, shape: Shape, value: Any, path: str, found: list[str], pattern: str | None = None
    ) -> None:
        low, high = _INT64 if shape.type == "long" else _INT32
        if isinstance(value, bool) or not isinstance(value, int):
            found.append(violation(value, path, "Member must be an integer"))
        elif not low <= value <= high:
            found.append(violation(value, path, f"Member must be an integer from {low} to {high}"))
        else:
            self._range(shape, value, path, found)

    def _float(
        self, shape: Shape, value: Any, path: str, found: list[str], pattern: str | None = None
    ) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            found.append(violation(value, path, "Member must be a number"))
        elif not math.isfinite(value):
            found.append(violation(value, path, "Member must be a finite number"))
        else:
            self._range(shape, value, path, found)

    def _boolean(
        self, shape: Shape, value: Any, path: str, found: list[str], pattern: str | None = None
    ) -> None:
        if not isinstance(value, bool):
            found.append(violation(value, path, "Member must be a boolean"))

    def _timestamp(
        self, shape: Shape, value: Any, path: str, found: list[str], pattern: str | None = None
    ) -> None:
        if parse_timestamp(value) is None:
            found.append(
                violation(
                    value, path, "Member must be a timestamp (epoch seconds or ISO 8601 text)"
                )
            )

    # -- shared constraints -----------------------------------------------------------------
    @staticmethod
    def _size(
        shape: Shape, value: str | list[Any] | dict[str, Any], path: str, found: list[str]
    ) -> None:
        if shape.max is not None and len(value) > shape.max:
            found.append(
                violation(
                    value,
                    path,
                    f"Member must have length less than or equal to {_number(shape.max)}",
                )
            )
        if shape.min is not None and len(value) < shape.min:
            found.append(
                violation(
                    value,
                    path,
                    f"Member must have length greater than or equal to {_number(shape.min)}",
                )
            )

    @staticmethod
    def _range(shape: Shape, value: float, path: str, found: list[str]) -> None:
        if shape.max is not None and value > shape.max:
            found.append(
                violation(
                    value,
                    path,
                    f"Member must have value less than or equal to {_number(shape.max)}",
                )
            )
        if shape.min is not None and value < shape.min:
            found.append(
                violation(
                    value,
                    path,
                    f"Member must have value greater than or equal to {_number(shape.min)}",
                )
            )


_CHECKS: dict[str, Callable[..., None]] = {
    "structure": Validator._structure,
    "list": Validator._list,
    "map": Validator._map,
    "string": Validator._string,
    "integer": Validator._integer,
    "long": Validator._integer,
    "float": Validator._float,
    "double": Validator._float,
    "boolean": Validator._boolean,
    "timestamp": Validator._timestamp,
}
