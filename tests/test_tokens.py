"""The one NextToken codec: round trips, and every way a tampered token is refused."""

from __future__ import annotations

import base64

import pytest

from polyhost.errors import InvalidParameterException
from polyhost.tokens import MAX_DEPTH, TokenCodec, is_count


def refuse(token: str) -> InvalidParameterException:
    return InvalidParameterException(f"bad token ({len(token)} characters)")


CODEC = TokenCodec("p/", refuse)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def test_round_trip_keeps_the_payload_and_adds_the_version() -> None:
    token = CODEC.encode({"c": {"AllTraffic/i-0/a": 12}})
    assert token.startswith("p/") and "=" not in token
    assert CODEC.decode(token) == {"v": 1, "c": {"AllTraffic/i-0/a": 12}}


def test_padding_is_optional() -> None:
    padded = "p/" + b64(b'{"v":1,"i":3}')
    assert padded.endswith("=")
    assert CODEC.decode(padded)["i"] == 3


@pytest.mark.parametrize(
    "token",
    [
        "",
        "p/",
        "g/" + b64(b'{"v":1}'),  # another use's prefix
        "p/!!!",
        "p/" + b64(b"not json"),
        "p/" + b64(b"[1, 2]"),
        "p/" + b64(b"{}"),
        "p/" + b64(b'{"v":true}'),
        "p/" + b64(b'{"v":2}'),
        "p/" + b64(b'{"v":1,"x":NaN}'),
        "p/" + b64(b'{"v":1,"x":"\\ud800"}'),
        "p/" + b64(b"[" * 5000),
        "p/" + b64(b'{"v":1,"x":' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}"),
        "p/" + b64(b"\xff\xfe"),
        "p/" + "A" * 70_000,
    ],
)
def test_tampered_tokens_raise_the_callers_error(token: str) -> None:
    with pytest.raises(InvalidParameterException, match="bad token"):
        CODEC.decode(token)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    name = "[" * 100 + '"{'
    assert CODEC.decode(CODEC.encode({"c": {name: 1}}))["c"] == {name: 1}


def test_is_count() -> None:
    assert is_count(0) and is_count(2**63 - 1)
    assert not any(is_count(v) for v in (-1, 2**63, True, 1.0, "1", None))
