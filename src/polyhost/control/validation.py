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

The walk is `polyhost.awsmodel.check`'s, shared with CloudWatch and CloudWatch Logs; what is
SageMaker's is here: the words of each violation, its paths, the patterns read differently,
and the one ValidationException that lists them all.
"""

from __future__ import annotations

import re
from typing import Any

from polyhost.awsmodel.check import Checker, Dialect, Entry, Path, Violation
from polyhost.awsmodel.check import compiled as compiled_pattern
from polyhost.awsmodel.check import parse_timestamp as parse_timestamp
from polyhost.awsmodel.shapes import Schema, Shape
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

SAGEMAKER = Dialect(pattern_translations=JAVA_PATTERNS, pattern_overrides=PATTERN_OVERRIDES)

_MAX_SHOWN = 256
_MAX_SHOWN_DEPTH = 16


def compiled(pattern: str) -> re.Pattern[str] | None:
    """The model's pattern as a Python regex (None if it cannot be read; then it is not checked)."""
    return compiled_pattern(JAVA_PATTERNS.get(pattern, pattern))


def camel(member: str) -> str:
    """`ModelName` -> `modelName`, the way AWS names members in validation messages."""
    return member[:1].lower() + member[1:]


def join_path(parent: str, member: str) -> str:
    return f"{parent}.{camel(member)}" if parent else camel(member)


def element_path(parent: str, index: int) -> str:
    return f"{parent}.{index + 1}.member"


def path_text(path: Path) -> str:
    """`productionVariants.1.member.variantName`: members camelCase, list elements 1-based, a
    map's structured values under their key."""
    text = ""
    for step in path:
        if isinstance(step, Entry):
            text = f"{text}.{step.key}"
        elif isinstance(step, int):
            text = element_path(text, step)
        else:
            text = join_path(text, step)
    return text


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


def raise_if_any(violations: list[str]) -> None:
    if violations:
        raise ValidationException(message(violations))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_TYPES = {
    "structure": "Member must be a structure (a JSON object)",
    "list": "Member must be a list (a JSON array)",
    "map": "Member must be a map (a JSON object)",
    "string": "Member must be a string",
    "integer": "Member must be an integer",
    "long": "Member must be an integer",
    "float": "Member must be a number",
    "double": "Member must be a number",
    "boolean": "Member must be a boolean",
    "timestamp": "Member must be a timestamp (epoch seconds or ISO 8601 text)",
}


def constraint(found: Violation) -> str:
    """What SageMaker says a violated constraint is, e.g. `Member must not be null`."""
    shape = found.shape
    kind = found.kind
    if kind in ("missing", "null"):
        return "Member must not be null"
    if kind in ("type", "time"):
        return _TYPES[shape.type]
    if kind == "text":
        return "Member must be valid Unicode text"
    if kind == "enum":
        return "Member must satisfy enum value set: [" + ", ".join(shape.enum or ()) + "]"
    if kind in ("length", "size"):
        if found.detail == "max":
            return f"Member must have length less than or equal to {_number(shape.max or 0)}"
        return f"Member must have length greater than or equal to {_number(shape.min or 0)}"
    if kind == "pattern":
        return f"Member must satisfy regular expression pattern: {found.detail}"
    if kind == "bounds":
        low, high = (-(2**63), 2**63 - 1) if shape.type == "long" else (-(2**31), 2**31 - 1)
        return f"Member must be an integer from {low} to {high}"
    if kind == "range":
        if found.detail == "max":
            return f"Member must have value less than or equal to {_number(shape.max or 0)}"
        return f"Member must have value greater than or equal to {_number(shape.min or 0)}"
    if kind == "finite":
        return "Member must be a finite number"
    inner = ", ".join(constraint(item) for item in found.inner)
    if kind == "map_key":
        return f"Map keys must satisfy constraint: [{inner}]"
    if kind == "map_value":
        return f"Map value must satisfy constraint: [{inner}]"
    return "Map value must not be null"


def sagemaker_violation(found: Violation) -> str:
    """One item of SageMaker's message for a violation the shared walk found."""
    return violation(found.value, path_text(found.path), constraint(found))


class Validator:
    """Walks a request against its input shape and collects every violation, in AWS's words."""

    def __init__(self, schema: Schema) -> None:
        self._checker = Checker(schema, SAGEMAKER)

    def check(self, shape: Shape, params: dict[str, Any]) -> list[str]:
        _, found = self._checker.check(shape, params)
        return [sagemaker_violation(item) for item in found]
