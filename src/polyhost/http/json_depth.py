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

import re

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
