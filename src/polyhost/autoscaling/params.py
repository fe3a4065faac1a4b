"""Requests checked against botocore's `application-autoscaling` model.

Any client may send anything, so each request is walked against its operation's input shape
(`polyhost.awsmodel.check`, the walk SageMaker, CloudWatch and CloudWatch Logs use) before it
is served; the first bad member answers ValidationException naming it, what it got and what it
takes. What the model cannot say (a ResourceId's form, step bounds, a schedule) is checked by
the operations.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from polyhost.awsmodel.check import Checker, Dialect, Violation, dotted_path, shown_value
from polyhost.awsmodel.shapes import Schema, load_schema
from polyhost.errors import ValidationException

SERVICE = "application-autoscaling"
OPERATIONS = (
    "RegisterScalableTarget",
    "DeregisterScalableTarget",
    "DescribeScalableTargets",
    "PutScalingPolicy",
    "DeleteScalingPolicy",
    "DescribeScalingPolicies",
    "DescribeScalingActivities",
    "PutScheduledAction",
    "DeleteScheduledAction",
    "DescribeScheduledActions",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
)
# The model's XML-text pattern spells a surrogate pair range Python cannot read; lone
# surrogates are refused by the walk anyway, so the range of every other character stands.
_XML_TEXT = "[\\u0020-\\uD7FF\\uE000-\\uFFFD\\uD800\\uDC00-\\uDBFF\\uDFFF\\r\\n\\t]*"
AUTOSCALING = Dialect(
    first_only=True,
    integral_floats=True,
    pattern_translations={_XML_TEXT: "[\\u0020-\\ud7ff\\ue000-\\U0010ffff\\r\\n\\t]*"},
)


@functools.cache
def autoscaling_schema() -> Schema:
    """Read once, on first use."""
    return load_schema(SERVICE, OPERATIONS)


def checked(operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """`params` as the operation's input shape types it, or ValidationException."""
    schema = autoscaling_schema()
    shape = schema.input(operation)
    if shape is None:
        return {}
    typed, found = Checker(schema, AUTOSCALING).check(shape, params)
    if found:
        raise ValidationException(message(found[0]))
    result: dict[str, Any] = typed
    return result


def message(found: Violation) -> str:
    """One violation in words that say what to send instead."""
    if found.inner:
        return message(found.inner[0])
    name = dotted_path(found.path) or "The request"
    shape, value, kind = found.shape, found.value, found.kind
    if kind in ("missing", "null"):
        return f"{name} is required."
    if kind == "type":
        got = f"{type(value).__name__} {shown_value(value)}"
        return f"{name} must be of type {shape.type}, not {got}."
    if kind == "text":
        return f"{name} must be valid Unicode text."
    if kind == "enum":
        allowed = ", ".join(shape.enum or ())
        return f"{name} must be one of {allowed}, not {shown_value(value)}."
    if kind == "length":
        return (
            f"{name} must be {int(shape.min or 0)} to {int(shape.max or 0)} characters long, "
            f"not {len(value)}."
        )
    if kind == "size":
        return f"{name} must hold at most {int(shape.max or 0)} items, not {len(value)}."
    if kind == "pattern":
        return f"{name} {shown_value(value)} does not match the pattern {found.detail}."
    if kind in ("bounds", "range"):
        return f"{name} {value} is out of range ({shape.min} to {shape.max})."
    if kind == "finite":
        return f"{name} must be a finite number, not {value}."
    return f"{name} must be a timestamp, not {shown_value(value)}."
