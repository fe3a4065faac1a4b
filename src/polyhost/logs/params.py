"""Checks on CloudWatch Logs request members, as its model declares them (types, ranges, patterns).

botocore checks these too, but only for clients that validate; any client may send anything, so
each member is checked here and a bad one answers InvalidParameterException naming the member,
what it got and what it takes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from polyhost.errors import InvalidParameterException

MAX_TIMESTAMP = 2**63 - 1
MAX_TOKEN_CHARS = 64 * 1024

GROUP_NAME = re.compile(r"[\.\-_/#A-Za-z0-9]+")
GROUP_IDENTIFIER = re.compile(r"[\w#+=/:,.@-]*", re.ASCII)
STREAM_NAME = re.compile(r"[^:*]*")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class Params:
    """The members of one request, read and checked one at a time."""

    def __init__(self, members: Mapping[str, Any]) -> None:
        self._members = members

    def given(self, name: str) -> bool:
        return self._members.get(name) is not None

    def string(
        self,
        name: str,
        *,
        max_chars: int,
        min_chars: int = 1,
        pattern: re.Pattern[str] | None = None,
        required: bool = False,
    ) -> str | None:
        value = self._members.get(name)
        if value is None:
            if required:
                raise InvalidParameterException(f"{name} is required.")
            return None
        if not isinstance(value, str):
            raise InvalidParameterException(
                f"{name} must be a string, not {type(value).__name__} {_shown(value)}."
            )
        if not min_chars <= len(value) <= max_chars:
            raise InvalidParameterException(
                f"{name} must be {min_chars} to {max_chars} characters long, not {len(value)}."
            )
        if pattern is not None and not pattern.fullmatch(value):
            raise InvalidParameterException(
                f"{name} {_shown(value)} does not match the pattern {pattern.pattern}."
            )
        return value

    def integer(self, name: str, *, minimum: int, maximum: int) -> int | None:
        value = self._members.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidParameterException(
                f"{name} must be an integer, not {type(value).__name__} {_shown(value)}."
            )
        if not minimum <= value <= maximum:
            raise InvalidParameterException(
                f"{name} must be between {minimum} and {maximum}, not {value}."
            )
        return value

    def timestamp(self, name: str) -> int | None:
        """Milliseconds since the epoch (CloudWatch's `Timestamp`: a long, at least 0)."""
        return self.integer(name, minimum=0, maximum=MAX_TIMESTAMP)

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self._members.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InvalidParameterException(
                f"{name} must be true or false, not {type(value).__name__} {_shown(value)}."
            )
        return value

    def enum(self, name: str, choices: tuple[str, ...]) -> str | None:
        value = self.string(name, max_chars=64)
        if value is not None and value not in choices:
            raise InvalidParameterException(
                f"{name} must be one of {', '.join(choices)}, not {_shown(value)}."
            )
        return value

    def strings(
        self,
        name: str,
        *,
        min_items: int,
        max_items: int,
        max_chars: int,
        pattern: re.Pattern[str] | None = None,
    ) -> list[str] | None:
        value = self._members.get(name)
        if value is None:
            return None
        if not isinstance(value, list):
            raise InvalidParameterException(
                f"{name} must be a list of strings, not {type(value).__name__}."
            )
        if not min_items <= len(value) <= max_items:
            raise InvalidParameterException(
                f"{name} must hold {min_items} to {max_items} items, not {len(value)}."
            )
        checked: list[str] = []
        for index, item in enumerate(value):
            member = f"{name}[{index}]"
            checked.append(
                Params({member: item}).string(
                    member, max_chars=max_chars, pattern=pattern, required=True
                )
                or ""
            )
        return checked

    def token(self, name: str = "nextToken") -> str | None:
        return self.string(name, max_chars=MAX_TOKEN_CHARS)
