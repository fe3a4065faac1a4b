"""JSON request bodies read fast, with exactly the answers (and errors) of the stdlib reader.

A 100-image MNIST request is 1.7 MB of JSON holding 78,400 numbers in 81,300 lists. The stdlib
`json.loads` builds every one of those Python objects (36 ms), `np.asarray` walks them again
(10 ms), and a stack's own element checks walk them once more: together ten times the model's
call. Two paths replace that when they can give the same result:

- `loads`: orjson, which parses in compiled code. Where orjson's answer could differ from the
  stdlib's (it refuses NaN and Infinity, which TensorFlow Serving and Python's json accept; it
  turns integers of 20 digits and more into floats; it refuses lone surrogates, control
  characters, more than 1024 levels of nesting and several documents in a row), it refuses the
  text or the text has an integer of 19 digits or more, and the stdlib parses it instead: the
  same value, or the same `json.JSONDecodeError` as before.
- `read_document`: a body that is a rectangular JSON array of numbers, bare or as the value of
  one envelope key (`{"instances": [...]}`), is read without building the nested lists. A few
  passes of `bytes.translate` and substring search over the text check that it is such an array
  (only numbers, commas, brackets and whitespace; every list of a level the same length; no
  empty list or element; numbers only inside the innermost lists), orjson reads the numbers as
  one flat list, and numpy shapes it. Anything else (strings, objects, booleans, null, NaN,
  ragged or empty lists, long integers) returns None, and the caller takes its usual path,
  which keeps every rule and message. The array has the dtype `np.asarray` gives the nested
  lists: int64 when every number is an integer, float64 otherwise.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

Array = npt.NDArray[Any]

_WHITESPACE = b" \t\n\r"
_NUMBER_CHARS = b"0123456789.eE+-"
_ALLOWED = _NUMBER_CHARS + b"[]," + _WHITESPACE
# Digits -> "0", the decimal point -> "p", the other characters of a number -> "n".
_CLASSES = bytes.maketrans(_NUMBER_CHARS, b"0000000000pnnnn")
_DIGITS_AND_POINT = bytes.maketrans(b"0123456789.", b"0000000000p")
_BRACKETS_TO_SPACE = bytes.maketrans(b"[]", b"  ")
# int64 holds every integer of up to 18 digits; orjson turns longer ones into floats. A run of
# 19 digits right after a decimal point is a float's fraction (0.0012345678901234567), harmless.
_RUN = b"0" * 19
_FRACTION_RUN = b"p" + _RUN
# Below this size the fixed cost of the numpy passes (some microseconds each) is more than
# orjson and np.asarray take for the whole body: a one-row request goes the usual way.
DENSE_MIN_BYTES = 4096
_STRUCTURE = np.zeros(256, dtype=bool)
_STRUCTURE[list(b"[],")] = True
_OPEN, _CLOSE = ord("["), ord("]")

# JSON's whitespace is these four characters only (`\s` would also take \f and \v).
_WS = rb"[ \t\n\r]*"
_STRING = rb'"([^"\\\x00-\x1f]*)"'
_PAIR = _STRING + _WS + rb":" + _WS + _STRING
_PREFIX = re.compile(
    _WS + rb"\{" + _WS + rb"(?:" + _PAIR + _WS + rb"," + _WS + rb")?" + _STRING + _WS + rb":" + _WS
)
_SUFFIX = re.compile(_WS + rb"(?:," + _WS + _PAIR + _WS + rb")?\}" + _WS)


def _no_long_integer(classes: bytes) -> bool:
    """Every run of 19 digits in `classes` (digits "0", points "p") follows a decimal point."""
    return classes.count(_RUN) == classes.count(_FRACTION_RUN)


def orjson_safe(data: bytes | str) -> bool:
    """No integer orjson would turn into a float (see `_RUN`)."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return _no_long_integer(raw.translate(_DIGITS_AND_POINT))


def loads(data: bytes | str) -> Any:
    """`json.loads(data)`, through orjson whenever that gives the same value (see above)."""
    if orjson_safe(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the stdlib decides: NaN, several documents, or the error to report
    return json.loads(data)


@dataclass(frozen=True)
class DenseJson:
    """A JSON array of numbers read straight into `array`; `text` is its JSON, for the exact
    (element by element) path a caller still needs for other dtypes or for its messages."""

    array: Array
    text: bytes

    def value(self) -> Any:
        """The nested lists `json.loads` would give."""
        return loads(self.text)

    def wrapped(self) -> DenseJson:
        """This array as the single row of a list one rank higher (`[value]`)."""
        return DenseJson(self.array[np.newaxis], b"[" + self.text + b"]")


def dense_array(text: bytes) -> DenseJson | None:
    """`text` as a DenseJson when it is a rectangular array of numbers (see above), else None."""
    if not text or text.translate(None, _ALLOWED):
        return None
    classes = text.translate(_CLASSES, _WHITESPACE)
    if classes[:1] != b"[" or classes[-1:] != b"]" or not _no_long_integer(classes):
        return None
    # The brackets and commas, and the length of the number between each two of them.
    characters = np.frombuffer(classes, dtype=np.uint8)
    positions = np.flatnonzero(_STRUCTURE[characters])
    structure = characters[positions]
    skeleton = structure.tobytes()
    shape = _shape(skeleton)
    if shape is None or skeleton != _canonical(shape) or positions[-1] != len(classes) - 1:
        return None
    # A number right after "[" or "," and right before "," or "]", nowhere else: no empty
    # element or list, and no number beside an outer list's bracket.
    filled = np.diff(positions) > 1
    wanted = (structure[:-1] != _CLOSE) & (structure[1:] != _OPEN)
    if not np.array_equal(filled, wanted):
        return None
    try:
        flat = orjson.loads(b"[" + text.translate(_BRACKETS_TO_SPACE) + b"]")
    except orjson.JSONDecodeError:
        return None
    if len(flat) != math.prod(shape):
        return None
    array = np.array(flat)
    if array.dtype.kind not in "iuf":
        return None
    return DenseJson(array.reshape(shape), text)


def _shape(skeleton: bytes) -> tuple[int, ...] | None:
    """The shape a canonical skeleton (`[[,],[,]]`: brackets and commas only) stands for.

    The first list of each level is measured; `_canonical` then checks all the others. Every
    list holds at least one element (empty ones were refused before).
    """
    rank = len(skeleton) - len(skeleton.lstrip(b"["))
    if rank == 0:
        return None
    close = skeleton.find(b"]")
    if close < rank:
        return None
    dims = [skeleton.count(b",", rank - 1, close) + 1]
    length = dims[0] + 1  # the innermost list: "[" + commas + "]"
    for level in range(rank - 2, -1, -1):  # the first list of each outer level
        position, count = level + 1, 0
        while True:
            position += length
            count += 1
            following = skeleton[position : position + 1]
            if following == b",":
                position += 1
            elif following == b"]":
                break
            else:
                return None
        dims.insert(0, count)
        length = position - level + 1
    return tuple(dims)


def _canonical(shape: tuple[int, ...]) -> bytes:
    """The skeleton of a rectangular array of `shape` with no whitespace and no numbers."""
    level = b"[" + b"," * (shape[-1] - 1) + b"]"
    for size in reversed(shape[:-1]):
        level = b"[" + b",".join([level] * size) + b"]"
    return level


def read_document(
    body: bytes,
    keys: tuple[str, ...],
    extras: tuple[str, ...] = (),
    min_bytes: int = DENSE_MIN_BYTES,
) -> tuple[str | None, DenseJson, dict[str, str]] | None:
    """A body that is a dense array (key None) or `{KEY: array}` for one of `keys`, optionally
    beside string-valued `extras` (`"signature_name": "..."`) that use no escapes.

    Returns (key, array, extras found), or None for any other body (and for one shorter than
    `min_bytes`), which the caller then reads the usual way.
    """
    if len(body) < min_bytes:
        return None
    start = body.find(b"[")
    end = body.rfind(b"]")
    if start < 0 or end < start:
        return None
    key: str | None = None
    found: dict[str, str] = {}
    if body[:start].strip(_WHITESPACE) or body[end + 1 :].strip(_WHITESPACE):
        if not keys:
            return None
        prefix = _PREFIX.fullmatch(body, 0, start)
        suffix = _SUFFIX.fullmatch(body, end + 1)
        if prefix is None or suffix is None:
            return None
        try:
            key = prefix.group(3).decode("ascii")
            pairs = [prefix.group(1, 2), suffix.group(1, 2)]
            for name, value in pairs:
                if name is not None:
                    found[name.decode("utf-8")] = value.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if key not in keys or key in found or set(found) - set(extras):
            return None
        if len(found) != sum(name is not None for name, _ in pairs):  # the same extra twice
            return None
    array = dense_array(body[start : end + 1])
    if array is None:
        return None
    return key, array, found
