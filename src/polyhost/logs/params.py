"""CloudWatch Logs requests checked against botocore's `logs` model, in CloudWatch Logs' words.

botocore checks members too, but only for clients that validate; any client may send anything,
so every request is walked against its operation's input shape (`polyhost.awsmodel.check`, the
walk SageMaker and CloudWatch use too) before it is served, and the first bad member answers
InvalidParameterException naming it, what it got and what it takes. What the model cannot say
(one of two members, not both; a time range the right way round) stays with the operations.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from polyhost.awsmodel.check import (
    INT32,
    INT64,
    Checker,
    Dialect,
    Violation,
    dotted_path,
    shown_value,
)
from polyhost.awsmodel.shapes import Schema, Shape, load_schema
from polyhost.errors import InvalidParameterException

SERVICE = "logs"
OPERATIONS = ("DescribeLogGroups", "DescribeLogStreams", "GetLogEvents", "FilterLogEvents")
# The model's patterns are Java's, whose \w is ASCII (a log group identifier is ASCII).
LOGS = Dialect(first_only=True, pattern_flags=re.ASCII)

Params = Mapping[str, Any]


@functools.cache
def logs_schema() -> Schema:
    """Read once, on first use, so a server whose logs are never read pays nothing for it."""
    return load_schema(SERVICE, OPERATIONS)


def checked(operation: str, params: Params) -> dict[str, Any]:
    """`params` as the operation's input shape types it, or InvalidParameterException."""
    schema = logs_schema()
    shape = schema.input(operation)
    if shape is None:
        return {}
    typed, found = Checker(schema, LOGS).check(shape, params)
    if found:
        raise InvalidParameterException(logs_message(found[0]))
    result: dict[str, Any] = typed
    return result


_TYPES = {
    "string": "a string",
    "integer": "an integer",
    "long": "an integer",
    "boolean": "true or false",
    "float": "a number",
    "double": "a number",
    "timestamp": "a timestamp",
    "structure": "an object",
    "map": "an object",
}


def _between(low: float | None, high: float | None, unit: str) -> str:
    if low is not None and high is not None:
        return f"{int(low)} to {int(high)} {unit}"
    if low is not None:
        return f"at least {int(low)} {unit}"
    return f"at most {int(high or 0)} {unit}"


def _limits(shape: Shape) -> tuple[int, int]:
    low, high = INT64 if shape.type == "long" else INT32
    if shape.min is not None:
        low = max(low, int(shape.min))
    if shape.max is not None:
        high = min(high, int(shape.max))
    return low, high


def logs_message(found: Violation) -> str:
    """What CloudWatch Logs says of a violation: `limit must be between 1 and 50, not 51.`"""
    if found.inner:
        return logs_message(found.inner[0])
    name = dotted_path(found.path) or "The request"
    shape, value, kind = found.shape, found.value, found.kind
    if kind in ("missing", "null"):
        return f"{name} is required."
    if kind == "type" and shape.type == "list":
        element = "a list of strings" if _element_is_text(shape) else "a list"
        return f"{name} must be {element}, not {type(value).__name__}."
    if kind == "type":
        expected = _TYPES.get(shape.type, f"a {shape.type}")
        return f"{name} must be {expected}, not {type(value).__name__} {shown_value(value)}."
    if kind == "text":
        return f"{name} must be valid Unicode text."
    if kind == "enum":
        return f"{name} must be one of {', '.join(shape.enum or ())}, not {shown_value(value)}."
    if kind == "length":
        return (
            f"{name} must be {_between(shape.min, shape.max, 'characters')} long, not {len(value)}."
        )
    if kind == "size":
        return f"{name} must hold {_between(shape.min, shape.max, 'items')}, not {len(value)}."
    if kind == "pattern":
        return f"{name} {shown_value(value)} does not match the pattern {found.detail}."
    if kind in ("bounds", "range") and shape.type in ("integer", "long"):
        low, high = _limits(shape)
        return f"{name} must be between {low} and {high}, not {value}."
    if kind == "range":
        return f"{name} must be between {shape.min} and {shape.max}, not {value}."
    if kind == "finite":
        return f"{name} must be a finite number, not {value}."
    return f"{name} must be a timestamp, not {shown_value(value)}."


_ELEMENT_TYPES: dict[str, bool] = {}


def _element_is_text(shape: Shape) -> bool:
    """Whether a list shape's elements are strings (every list CloudWatch Logs reads is)."""
    if shape.member is None:
        return False
    if shape.member not in _ELEMENT_TYPES:
        _ELEMENT_TYPES[shape.member] = logs_schema().shape(shape.member).type == "string"
    return _ELEMENT_TYPES[shape.member]
