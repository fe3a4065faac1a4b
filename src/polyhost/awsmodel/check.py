"""A request checked against its input shape: one walk for SageMaker, CloudWatch and CloudWatch
Logs, whose messages and error codes differ but whose rules are the model's.

The walk finds `Violation`s, structured (where, what value, which shape, which constraint), and
leaves the words to each service: SageMaker lists every violation in one message, CloudWatch and
CloudWatch Logs name the first, each in its own phrasing and with its own error class. What
differs in *reading* a request is a `Dialect`: how many violations to collect, whether an
integral float is an integer (CloudWatch's JSON and CBOR clients send `60.0`), the range of a
timestamp, how the model's Java regular expressions read in Python. Query-protocol text
(`Period=60`) is read per call (`textual`).

The walk also returns the request as the model types it (only the model's members, timestamps
as epoch seconds, text parsed when `textual`), which CloudWatch hands to its API.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from polyhost.awsmodel.shapes import Schema, Shape

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

Kind = Literal[
    "missing",  # a required member is absent (or null)
    "null",  # a list element is null
    "type",  # not the shape's type
    "text",  # a string that is not Unicode text (a lone surrogate)
    "enum",  # not one of the shape's values
    "length",  # a string's length out of the shape's min/max (detail: "min" or "max")
    "size",  # a list's or map's size out of min/max (detail: "min" or "max")
    "pattern",  # a string the shape's pattern refuses (detail: the pattern)
    "bounds",  # an integer outside its type (int32 or int64)
    "range",  # a number out of the shape's min/max (detail: "min" or "max")
    "finite",  # a NaN or infinite number
    "time",  # a timestamp that does not read as one (detail "range": out of the dialect's)
    "map_key",  # a map key violating its shape (inner: the key's violations)
    "map_value",  # a scalar map value violating its shape (inner: its violations)
    "map_null",  # a null map value
]


@dataclass(frozen=True)
class Entry:
    """A step into a map, in a violation's path: the key, its position, key or value."""

    key: Any
    index: int
    part: Literal["key", "value"]


Step = str | int | Entry  # a member name, a list index (0-based) or a map entry
Path = tuple[Step, ...]


@dataclass(frozen=True)
class Violation:
    kind: Kind
    path: Path
    value: Any
    shape: Shape
    detail: str = ""
    inner: tuple[Violation, ...] = ()


@dataclass(frozen=True)
class Dialect:
    """How one service reads requests against its model.

    `first_only`: stop at the first violation (the service names one per answer).
    `integral_floats`: 60.0 is the integer 60.
    `time_range`: epoch seconds a timestamp must lie within (None: any finite number).
    `pattern_flags`, `pattern_translations` (model pattern -> Python regex),
    `pattern_overrides` ((structure, member) -> pattern used instead of the model's).
    """

    first_only: bool = False
    integral_floats: bool = False
    time_range: tuple[float, float] | None = None
    pattern_flags: int = 0
    pattern_translations: Mapping[str, str] = field(default_factory=dict)
    pattern_overrides: Mapping[tuple[str, str], str] = field(default_factory=dict)


_compiled: dict[tuple[str, int], re.Pattern[str] | None] = {}


def shown_value(value: object) -> str:
    """A value as an error message quotes it: its repr, cut at 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def dotted_path(path: Path) -> str:
    """A member's path as JSON services spell it in their messages:
    `StepAdjustments[0].ScalingAdjustment`, a map entry by its key (`Tags['team']`)."""
    text = ""
    for step in path:
        if isinstance(step, Entry):
            text = f"{text}[{shown_value(step.key)}]"
        elif isinstance(step, int):
            text = f"{text}[{step}]"
        else:
            text = f"{text}.{step}" if text else step
    return text


def compiled(pattern: str, flags: int = 0) -> re.Pattern[str] | None:
    """`pattern` as a Python regex (None if it cannot be read; then it is not checked)."""
    key = (pattern, flags)
    if key not in _compiled:
        try:
            _compiled[key] = re.compile(pattern, flags)
        except re.error:
            _compiled[key] = None
    return _compiled[key]


def parse_timestamp(value: Any) -> float | None:
    """Epoch seconds from a timestamp as any protocol sends it: a datetime (CBOR's tag 1), a
    number (JSON), numeric or ISO 8601 text (query, or JSON written by hand); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text)
            return number if math.isfinite(number) else None
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return None


class _Enough(Exception):
    """The first violation is all a `first_only` dialect reports."""


def _valid_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Checker:
    """Walks values against the shapes of `schema`, the way `dialect` reads them."""

    def __init__(self, schema: Schema, dialect: Dialect) -> None:
        self._schema = schema
        self._dialect = dialect

    def check(self, shape: Shape, value: Any, textual: bool = False) -> tuple[Any, list[Violation]]:
        """`value` as the model types it, and what is wrong with it (nothing: an empty list)."""
        walk = _Walk(self._schema, self._dialect, textual)
        try:
            typed = walk.value(shape, value, (), walk.found)
        except _Enough:
            typed = None
        return typed, walk.found


class _Walk:
    def __init__(self, schema: Schema, dialect: Dialect, textual: bool) -> None:
        self.schema = schema
        self.dialect = dialect
        self.textual = textual
        self.found: list[Violation] = []

    def add(self, found: list[Violation], violation: Violation) -> None:
        found.append(violation)
        if self.dialect.first_only and found is self.found:
            raise _Enough

    def value(
        self,
        shape: Shape,
        value: Any,
        path: Path,
        found: list[Violation],
        pattern: str | None = None,
    ) -> Any:
        kind = shape.type
        if kind == "structure":
            return self.structure(shape, value, path, found)
        if kind == "list":
            return self.sequence(shape, value, path, found)
        if kind == "map":
            return self.mapping(shape, value, path, found)
        if kind == "string":
            return self.string(shape, value, path, found, pattern)
        if kind in ("integer", "long"):
            return self.integer(shape, value, path, found)
        if kind in ("float", "double"):
            return self.number(shape, value, path, found)
        if kind == "boolean":
            return self.boolean(shape, value, path, found)
        if kind == "timestamp":
            return self.timestamp(shape, value, path, found)
        return value  # blobs and documents: in none of the operations polyhost serves

    def structure(self, shape: Shape, value: Any, path: Path, found: list[Violation]) -> Any:
        if not isinstance(value, dict):
            self.add(found, Violation("type", path, value, shape))
            return value
        out: dict[str, Any] = {}
        for member, target in shape.members.items():
            item = value.get(member)
            member_path = (*path, member)
            if item is None:
                if member in shape.required:
                    self.add(found, Violation("missing", member_path, None, shape))
                continue
            override = self.dialect.pattern_overrides.get((shape.name, member))
            out[member] = self.value(self.schema.shape(target), item, member_path, found, override)
        return out

    def _size(self, shape: Shape, value: Any, path: Path, found: list[Violation]) -> bool:
        """Whether the list or map is within its size (one too long is not walked further)."""
        if shape.max is not None and len(value) > shape.max:
            self.add(found, Violation("size", path, value, shape, "max"))
            return False
        if shape.min is not None and len(value) < shape.min:
            self.add(found, Violation("size", path, value, shape, "min"))
        return True

    def sequence(self, shape: Shape, value: Any, path: Path, found: list[Violation]) -> Any:
        if not isinstance(value, list):
            self.add(found, Violation("type", path, value, shape))
            return value
        if not self._size(shape, value, path, found) or shape.member is None:
            return value
        element = self.schema.shape(shape.member)
        out: list[Any] = []
        for index, item in enumerate(value):
            if item is None:
                self.add(found, Violation("null", (*path, index), None, element))
                continue
            out.append(self.value(element, item, (*path, index), found))
        return out

    def mapping(self, shape: Shape, value: Any, path: Path, found: list[Violation]) -> Any:
        if not isinstance(value, dict):
            self.add(found, Violation("type", path, value, shape))
            return value
        if not self._size(shape, value, path, found):
            return value
        key_shape = self.schema.shape(shape.key) if shape.key else None
        value_shape = self.schema.shape(shape.value) if shape.value else None
        out: dict[Any, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if key_shape is not None:
                problems: list[Violation] = []
                key = self.value(key_shape, key, (*path, Entry(key, index, "key")), problems)
                if problems:
                    self.add(found, Violation("map_key", path, key, shape, inner=tuple(problems)))
            if value_shape is None:
                out[key] = item
                continue
            where = (*path, Entry(key, index, "value"))
            if item is None:
                self.add(found, Violation("map_null", path, {key: None}, shape))
                continue
            if value_shape.type in ("structure", "list", "map"):
                out[key] = self.value(value_shape, item, where, found)
                continue
            problems = []
            out[key] = self.value(value_shape, item, where, problems)
            if problems:
                self.add(
                    found, Violation("map_value", path, {key: item}, shape, inner=tuple(problems))
                )
        return out

    def string(
        self, shape: Shape, value: Any, path: Path, found: list[Violation], pattern: str | None
    ) -> Any:
        if not isinstance(value, str):
            self.add(found, Violation("type", path, value, shape))
            return value
        if not _valid_text(value):
            self.add(found, Violation("text", path, value, shape))
            return value
        if shape.enum is not None and value not in shape.enum:
            self.add(found, Violation("enum", path, value, shape))
            return value
        if shape.max is not None and len(value) > shape.max:
            self.add(found, Violation("length", path, value, shape, "max"))
        if shape.min is not None and len(value) < shape.min:
            self.add(found, Violation("length", path, value, shape, "min"))
        expected = pattern or shape.pattern
        if expected:
            dialect = self.dialect
            source = dialect.pattern_translations.get(expected, expected)
            regex = compiled(source, dialect.pattern_flags)
            if regex is not None and regex.fullmatch(value) is None:
                self.add(found, Violation("pattern", path, value, shape, expected))
        return value

    def integer(self, shape: Shape, value: Any, path: Path, found: list[Violation]) -> Any:
        if self.textual and isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                self.add(found, Violation("type", path, value, shape))
                return value
        if self.dialect.integral_floats and isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(found, Violation("type", path, value, shape))
            return value
        low, high = INT64 if shape.type == "long" else INT32
        if not low <= value <= high:
            self.add(found, Violation("bounds", path, value, shape))
            return value
        self._range(shape, value, path, found)
        return value

    def number(self, shape: Shape, value: Any, path: Path, found: list[Violation]) -> Any:
        if self.textual and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                self.add(found, Violation("type", path, value, shape))
                return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(found, Violation("type", path, value, shape))
            return value
        if not math.isfinite(value):
            self.add(found, Violation("finite", path, value, shape))
            return value
        self._range(shape, value, path, found)
        return float(value)

    def _range(self, shape: Shape, value: float, path: Path, found: list[Violation]) -> None:
        if shape.max is not None and value > shape.max:
            self.add(found, Violation("range", path, value, shape, "max"))
        if shape.min is not None and value < shape.min:
            self.add(found, Violation("range", path, value, shape, "min"))

    def boolean(self, shape: Shape, value: Any, path: Path, found: list[Violation]) -> Any:
        if self.textual and value in ("true", "false"):
            return value == "true"
        if not isinstance(value, bool):
            self.add(found, Violation("type", path, value, shape))
        return value

    def timestamp(self, shape: Shape, value: Any, path: Path, found: list[Violation]) -> Any:
        if isinstance(value, bool) or not isinstance(value, datetime | int | float | str):
            self.add(found, Violation("type", path, value, shape))
            return value
        epoch = parse_timestamp(value)
        limits = self.dialect.time_range
        if epoch is None:
            self.add(found, Violation("time", path, value, shape))
            return value
        if limits is not None and not limits[0] <= epoch <= limits[1]:
            self.add(found, Violation("time", path, value, shape, "range"))
            return value
        return epoch
