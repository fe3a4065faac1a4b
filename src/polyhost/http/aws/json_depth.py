"""A bound on how deeply a JSON request nests arrays and objects, checked on the raw bytes.

Python's JSON decoder and everything that walks a decoded value (validation, error messages)
recurse once per level, so a few hundred bytes of `[[[[...` could exhaust the stack and turn a
bad request into an internal failure. No SageMaker request nests deeper than a handful of
levels (the service model's deepest input is 8), so anything past `MAX_DEPTH` is refused before
it is decoded.

The check costs two `bytes.count` calls for ordinary bodies: only a body holding more brackets
than the limit is scanned, skipping string literals (whose brackets are text, not structure).
"""

from __future__ import annotations

import json
import re
from typing import Any

from polyhost.errors import SerializationException

MAX_DEPTH = 64

# A JSON string literal, escapes included (the "unrolled loop" form: no backtracking blow-up).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")
_OPENING = frozenset(b"[{")


def nesting_exceeds(raw: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when arrays and objects in `raw` nest more than `limit` levels deep."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub(b'""', raw)):
        if match.group()[0] in _OPENING:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def decode_object(raw: bytes, too_deep: str) -> dict[str, Any]:
    """The JSON object an AWS JSON request carries ({} for an empty body); raises
    SerializationException. `too_deep` ends the message for a body nested past `MAX_DEPTH`
    (it names the service: no request of it needs that many levels)."""
    if not raw.strip():
        return {}
    if nesting_exceeds(raw):
        raise SerializationException(
            f"Request body nests arrays and objects more than {MAX_DEPTH} levels deep; " + too_deep
        )
    try:
        params = json.loads(raw)
    # RecursionError: arrays/objects nested deeper than the decoder's stack allows.
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise SerializationException(f"Request body is not valid JSON: {error}") from None
    if not isinstance(params, dict):
        raise SerializationException(
            f"Request body must be a JSON object, not {type(params).__name__}."
        )
    return params
