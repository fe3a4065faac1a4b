"""The one NextToken codec: every paginated answer's token is `prefix + base64url(JSON object)`.

A token is opaque to clients but comes back as client input, so decoding is where a forged or
cut one must be stopped, cheaply and with the caller's own error (ValidationException for
SageMaker, InvalidParameterException for CloudWatch Logs, InvalidParameterValue or
InvalidNextToken for CloudWatch). The codec bounds what a token may cost before any JSON is
parsed: its length, then its nesting (counted on the text, so `[[[[...` never reaches the
recursive parser), and it accepts strict JSON only (no NaN, no lone surrogates). Each use
picks a prefix (which also keeps a token of one operation from being taken for another's) and
its payload; the payload is a JSON object whose `v` is the codec's format version, and each
caller still checks the members it reads.

It imports nothing of polyhost: the control plane, the logs and the metrics all use it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeGuard

VERSION = 1
MAX_CHARS = 64 * 1024
MAX_DEPTH = 6
_ALPHABET = re.compile(r"[A-Za-z0-9_-]*={0,2}")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _shallow(text: str, limit: int) -> bool:
    """Whether no container of the JSON `text` nests deeper than `limit` (strings skipped)."""
    depth = 0
    for match in _BRACKETS.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return False
        else:
            depth -= 1
    return True


def _valid_text(value: Any) -> bool:
    """No lone surrogate anywhere (a `\\ud800` escape is JSON but not Unicode text)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_valid_text(k) and _valid_text(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_valid_text(item) for item in value)
    return True


def is_count(value: Any, limit: int = 2**63) -> TypeGuard[int]:
    """A non-negative integer below `limit` (JSON's `true` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < limit


class TokenCodec:
    """Tokens of one use: `encode(payload)` and `decode(token)`, which returns the payload or
    raises `refuse(token)`: the caller's error, with the caller's message."""

    def __init__(
        self, prefix: str, refuse: Callable[[str], Exception], max_chars: int = MAX_CHARS
    ) -> None:
        self._prefix = prefix
        self._refuse = refuse
        self._max_chars = max_chars

    def encode(self, payload: Mapping[str, Any]) -> str:
        raw = json.dumps({"v": VERSION, **payload}, separators=(",", ":"), allow_nan=False)
        return self._prefix + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def decode(self, token: Any) -> dict[str, Any]:
        if (
            not isinstance(token, str)
            or len(token) > self._max_chars
            or not token.startswith(self._prefix)
        ):
            raise self._refuse(str(token))
        body = token[len(self._prefix) :]
        if not body or _ALPHABET.fullmatch(body) is None:
            raise self._refuse(token)
        try:
            stripped = body.rstrip("=")
            text = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4)).decode()
            if not _shallow(text, MAX_DEPTH):
                raise ValueError("nested too deeply")
            payload = json.loads(text, parse_constant=_refuse_constant)
        except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
            raise self._refuse(token) from None
        if (
            not isinstance(payload, dict)
            or not is_count(payload.get("v"))
            or payload["v"] != VERSION
            or not _valid_text(payload)
        ):
            raise self._refuse(token)
        return payload
