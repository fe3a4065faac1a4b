"""Pagination of the Describe operations: MaxResults (1 to 50, 50 by default, as AWS) and a
NextToken from `polyhost.tokens`, one prefix per operation, so a token of another operation or
a forged one is InvalidNextTokenException."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from polyhost.autoscaling.errors import InvalidNextTokenException, ValidationException
from polyhost.tokens import TokenCodec, is_count

MAX_RESULTS = 50


def _refuse(token: str) -> InvalidNextTokenException:
    return InvalidNextTokenException(
        "Invalid token: pass the NextToken of the previous answer of the same operation "
        "unchanged, or none to start over."
    )


_CODECS: dict[str, TokenCodec] = {}


def page(
    operation: str, params: Mapping[str, Any], items: Sequence[Any], key: str
) -> dict[str, Any]:
    """`{key: one page of items, NextToken?}` as `params` asks."""
    size = params.get("MaxResults")
    if size is None:
        size = MAX_RESULTS
    if not 1 <= int(size) <= MAX_RESULTS:
        raise ValidationException(f"MaxResults must be from 1 to {MAX_RESULTS}, not {size}.")
    codec = _CODECS.setdefault(operation, TokenCodec(operation + "/", _refuse))
    start = 0
    if params.get("NextToken"):
        payload = codec.decode(params["NextToken"])
        start = payload.get("o", -1)
        if not is_count(start, 2**31):
            raise _refuse(params["NextToken"])
    out: dict[str, Any] = {key: list(items[start : start + int(size)])}
    if start + int(size) < len(items):
        out["NextToken"] = codec.encode({"o": start + int(size)})
    return out
