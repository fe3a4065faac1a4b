"""The compiled accepting path of SigV4 verification (`_sigv4_fast.c`) against the Python one.

The compiled path may only ever accept what the Python verifier accepts, and must accept the
plain requests SDKs send. Requests are given as polyhost's HTTP protocol hands them over (names
lowercased, bytes), the form the compiled path handles. Each check compares a verifier with the
compiled path against one without it, on botocore-signed requests and on random mutations.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyhost.auth import sigv4
from polyhost.auth.errors import Refusal, SignatureRefused
from polyhost.auth.guard import AccessControl
from polyhost.auth.principals import PrincipalSet
from polyhost.auth.sigv4 import _MEMO_MAX, MAX_SKEW_S, SigV4Verifier
from tests.auth.helpers import (
    REGION,
    SIGNED_AT,
    TOKEN,
    TOKEN_AKID,
    TOKEN_SECRET,
    Wire,
    default_principals,
    sign,
)

NOW = SIGNED_AT.timestamp()
SAGEMAKER = frozenset({"sagemaker"})
HOSTNAME = "X-Amzn-SageMaker-Target-Container-Hostname"
PATH = "/endpoints/My-Endpoint/invocations"

pytestmark = pytest.mark.skipif(
    bool(os.environ.get(sigv4.NO_EXTENSIONS_ENV)),
    reason="POLYHOST_NO_EXTENSIONS is set: the compiled path is switched off",
)


@dataclasses.dataclass(frozen=True)
class Received:
    """A request as polyhost's HTTP protocol passes it to the verifier."""

    method: str
    path: bytes
    query: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    @classmethod
    def of(cls, wire: Wire) -> Received:
        pairs = tuple(
            (name.encode("latin-1").lower(), value.encode("latin-1"))
            for name, value in wire.headers
        )
        return cls(wire.method, wire.path.encode(), wire.query.encode(), pairs, wire.body)

    def replacing(
        self, index: int, name: bytes | None = None, value: bytes | None = None
    ) -> Received:
        old_name, old_value = self.headers[index]
        pair = (old_name if name is None else name, old_value if value is None else value)
        headers = (*self.headers[:index], pair, *self.headers[index + 1 :])
        return dataclasses.replace(self, headers=headers)

    def index(self, name: bytes) -> int:
        return next(i for i, (n, _) in enumerate(self.headers) if n == name)


def base_wire(when: dt.datetime = SIGNED_AT, **kwargs: Any) -> Wire:
    headers = {"Content-Type": "text/csv", HOSTNAME: "customIps1"}
    return sign(PATH, headers=headers, when=when, **kwargs)


def checker(principals: PrincipalSet, *, compiled: bool, now: float = NOW) -> SigV4Verifier:
    """A verifier that has verified the base request once (its memos are warm)."""
    made = SigV4Verifier(principals.lookup, region=REGION, clock=lambda: now, compiled=compiled)
    outcome(made, Received.of(base_wire()))
    return made


def outcome(verifier: SigV4Verifier, request: Received, **kwargs: Any) -> tuple[Refusal, str] | str:
    try:
        verified = verifier.verify(
            request.method,
            request.path,
            request.query,
            list(request.headers),
            services=kwargs.pop("services", SAGEMAKER),
            **(kwargs or {"body": request.body}),
        )
    except SignatureRefused as refused:
        return refused.reason, refused.message
    return verified.principal.name


def compiled_answer(verifier: SigV4Verifier, request: Received, *, now: float = NOW) -> Any:
    """What the compiled path alone answers (None: it leaves the request to Python)."""
    from polyhost.auth import _sigv4_fast

    return _sigv4_fast.verify(
        verifier._fast_heads,
        SAGEMAKER,
        now,
        MAX_SKEW_S,
        request.method,
        list(request.headers),
        request.path,
        request.query,
        request.body,
        None,
    )


# -- it is there, and it answers the requests SDKs send -----------------------------------------
def test_the_compiled_path_is_built_here() -> None:
    # `make test` builds it (gcc and libssl-dev come from `make tools`); polyhost without it
    # verifies in Python with the same answers, which every other test here would not show.
    assert sigv4.compiled_verifier_available()
    principals = default_principals()
    assert AccessControl.from_principals(principals, region=REGION).verifier.compiled


def test_the_next_request_of_a_client_is_accepted_by_the_compiled_path() -> None:
    verifier = checker(default_principals(), compiled=True)
    # A later request of the same client: another date, body and signature, the same head.
    later = Received.of(
        base_wire(when=SIGNED_AT + dt.timedelta(seconds=7), body=b'{"instances": [4]}')
    )
    answer = compiled_answer(verifier, later, now=NOW + 7)
    assert answer is not None and answer.principal.name == "alice"
    assert answer.service == "sagemaker"


def test_a_first_request_is_left_to_python_which_fills_the_memo() -> None:
    verifier = SigV4Verifier(
        default_principals().lookup, region=REGION, clock=lambda: NOW, compiled=True
    )
    request = Received.of(base_wire())
    assert compiled_answer(verifier, request) is None
    assert outcome(verifier, request) == "alice"
    assert compiled_answer(verifier, request) is not None


def test_a_session_token_is_checked_by_the_compiled_path_too() -> None:
    principals = default_principals()
    verifier = SigV4Verifier(principals.lookup, region=REGION, clock=lambda: NOW, compiled=True)
    signed = Received.of(sign(PATH, access_key=TOKEN_AKID, secret=TOKEN_SECRET, token=TOKEN))
    assert outcome(verifier, signed) == "tom"
    assert compiled_answer(verifier, signed).principal.name == "tom"
    at = signed.index(b"x-amz-security-token")
    wrong = signed.replacing(at, value=TOKEN[:-1].encode() + b"x")
    assert compiled_answer(verifier, wrong) is None
    assert outcome(verifier, wrong)[0] is Refusal.UNRECOGNIZED_CLIENT


@pytest.mark.parametrize("size", [0, 1, 100_000])
def test_bodies_of_any_size_and_a_precomputed_hash(size: int) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    principals = default_principals()
    fast, pure = checker(principals, compiled=True), checker(principals, compiled=False)
    request = Received.of(base_wire(body=body))
    assert outcome(fast, request) == outcome(pure, request) == "alice"
    digest = hashlib.sha256(body).hexdigest().upper()
    assert outcome(fast, request, body_sha256=digest) == "alice"
    tampered = dataclasses.replace(request, body=body + b"!")
    assert outcome(fast, tampered) == outcome(pure, tampered)
    assert outcome(fast, tampered)[0] is Refusal.INVALID_SIGNATURE


@pytest.mark.parametrize("seconds", [-MAX_SKEW_S - 1, -MAX_SKEW_S, 0, MAX_SKEW_S, MAX_SKEW_S + 1])
def test_the_time_window_is_the_same(seconds: float) -> None:
    principals = default_principals()
    now = NOW + seconds
    fast = checker(principals, compiled=True)
    fast._clock = lambda: now
    pure = checker(principals, compiled=False)
    pure._clock = lambda: now
    request = Received.of(base_wire())
    assert outcome(fast, request) == outcome(pure, request)
    accepted = abs(seconds) <= MAX_SKEW_S
    assert (compiled_answer(fast, request, now=now) is not None) is accepted


def test_the_environment_switch_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sigv4.NO_EXTENSIONS_ENV, "1")
    assert not sigv4.compiled_verifier_available()
    verifier = SigV4Verifier(default_principals().lookup, region=REGION, compiled=True)
    assert not verifier.compiled


def test_its_memo_stays_bounded() -> None:
    verifier = checker(default_principals(), compiled=True)
    request = Received.of(base_wire())
    at = request.index(b"authorization")
    value = request.headers[at][1]
    for i in range(3 * _MEMO_MAX):
        # Heads that parse alike (an extra parameter) but differ: each is memoised apart.
        varied = value.replace(b", Signature=", b", X%d=1, Signature=" % i)
        outcome(verifier, request.replacing(at, value=varied))
    assert 0 < len(verifier._fast_heads) <= _MEMO_MAX
    assert outcome(verifier, request) == "alice"


# -- whatever changes, it agrees with Python -------------------------------------------------------
_SPECIAL_BYTES = [b" ", b"  ", b"\t", b"\x85", b"\xa0", b",", b"A", b"0", b"\x00", b"/"]


def _mutations(request: Received) -> st.SearchStrategy[Any]:
    """One change to the request: a header edited, renamed, repeated, dropped or added; the
    path, query, method, body or date altered."""
    count = len(request.headers)
    at = st.integers(min_value=0, max_value=count - 1)
    special = st.sampled_from(_SPECIAL_BYTES)
    added = st.sampled_from(
        [
            (b"x-amz-foo", b"1"),
            (b"x-amzn-sagemaker-target-variant", b"v1"),
            (b"x-amz-security-token", TOKEN.encode()),
            (b"x-amz-content-sha256", hashlib.sha256(request.body).hexdigest().encode()),
            (b"x-amz-content-sha256", hashlib.sha256(request.body).hexdigest().upper().encode()),
            (b"x-amz-content-sha256", b"UNSIGNED-PAYLOAD"),
            (b"x-amz-content-sha256", b"0" * 64),
            (b"date", b"Fri, 17 May 2024 12:00:00 GMT"),
            (b"x-unrelated", b"1"),
            (b"authorization", b"AWS4-HMAC-SHA256 Credential=x"),
            (b"x-amz-date", b"20240517T120000Z"),
        ]
    )

    def edit(i: int, pos: int, piece: bytes) -> Received:
        value = request.headers[i][1]
        pos %= len(value) + 1
        return request.replacing(i, value=value[:pos] + piece + value[pos:])

    def delete(i: int, pos: int) -> Received:
        value = request.headers[i][1]
        if not value:
            return request
        pos %= len(value)
        return request.replacing(i, value=value[:pos] + value[pos + 1 :])

    def rename(i: int) -> Received:
        name = request.headers[i][0]
        return request.replacing(i, name=name[:1].upper() + name[1:])

    def repeat(i: int) -> Received:
        return dataclasses.replace(request, headers=(*request.headers, request.headers[i]))

    def drop(i: int) -> Received:
        return dataclasses.replace(request, headers=request.headers[:i] + request.headers[i + 1 :])

    def add(pair: tuple[bytes, bytes]) -> Received:
        return dataclasses.replace(request, headers=(*request.headers, pair))

    def other(kind: str) -> Received:
        if kind.startswith("/") or kind.startswith("path:"):
            path = kind[5:].encode() if kind.startswith("path:") else request.path + kind.encode()
            return dataclasses.replace(request, path=path)
        if kind.startswith("query:"):
            return dataclasses.replace(request, query=kind[6:].encode())
        if kind.startswith("method:"):
            return dataclasses.replace(request, method=kind[7:])
        if kind == "body":
            return dataclasses.replace(request, body=request.body + b" ")
        dated = [i for i, (n, _) in enumerate(request.headers) if n == b"x-amz-date"]
        if not dated:
            return add((b"x-amz-date", kind[5:].encode()))
        return request.replacing(dated[0], value=kind[5:].encode())

    others = st.sampled_from(
        [
            "/",
            "//",
            "/.",
            "path:/endpoints/My-Endpoint//invocations",
            "path:/endpoints/My-Endpoint/./invocations",
            "path:/endpoints/My-Endpoint/x/../invocations",
            "path:/endpoints/My%2DEndpoint/invocations",
            "path:/endpoints/my-endpoint/invocations",
            "path:endpoints/My-Endpoint/invocations",
            "query:",
            "query:a=1",
            "method:post",
            "method:PUT",
            "body",
            "date:20240517T120001Z",
            "date:20240517T120000Z ",
            "date:20240517T120060Z",
            "date:20240532T120000Z",
            "date:20240517T1200000",
            "date:20240518T120000Z",
            "date:20240517T114459Z",
        ]
    )
    return st.one_of(
        st.builds(edit, at, st.integers(min_value=0, max_value=400), special),
        st.builds(delete, at, st.integers(min_value=0, max_value=400)),
        st.builds(rename, at),
        st.builds(repeat, at),
        st.builds(drop, at),
        st.builds(add, added),
        st.builds(other, others),
    )


_PRINCIPALS = default_principals()
_BASE = Received.of(base_wire())
_LATER = Received.of(base_wire(when=SIGNED_AT + dt.timedelta(seconds=1)))
_FAST = checker(_PRINCIPALS, compiled=True)
_PURE = checker(_PRINCIPALS, compiled=False)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_mutated_request_gets_the_answer_python_gives(data: st.DataObject) -> None:
    request = data.draw(st.sampled_from([_BASE, _LATER]))
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        request = data.draw(_mutations(request))
    expected = outcome(_PURE, request)
    assert outcome(_FAST, request) == expected
    if compiled_answer(_FAST, request) is not None:
        assert expected == "alice"


def test_the_unmutated_requests_are_accepted_by_the_compiled_path() -> None:
    for request in (_BASE, _LATER):
        assert outcome(_FAST, request) == "alice"
        assert compiled_answer(_FAST, request).principal.name == "alice"


def test_an_acceptor_is_the_compiled_path_bound_to_one_route() -> None:
    import time

    principals = default_principals()
    request = Received.of(base_wire(when=dt.datetime.now(dt.UTC)))
    verifier = SigV4Verifier(principals.lookup, region=REGION, compiled=True)
    accept = verifier.acceptor("POST", SAGEMAKER)
    assert accept is not None
    args = (list(request.headers), request.path, request.query, request.body)
    assert accept(*args) is None  # not verified before: left to `verify`
    assert outcome(verifier, request) == "alice"
    accepted = accept(*args)
    assert accepted is not None and accepted.principal.name == "alice"
    # Bound to its route: a request signed for another service is not its to accept.
    assert verifier.acceptor("POST", frozenset({"logs"}))(*args) is None  # type: ignore[misc]
    tampered = (args[0], args[1], args[2], args[3] + b"!")
    assert accept(*tampered) is None
    # A verifier with its own clock has none: the compiled path would read the system's.
    frozen = SigV4Verifier(principals.lookup, region=REGION, clock=lambda: NOW, compiled=True)
    assert frozen.acceptor("POST", SAGEMAKER) is None
    assert time.time() > NOW


def test_two_verifiers_never_share_an_answer() -> None:
    """The compiled path remembers the last entry it found; never for another verifier."""
    import json

    from polyhost.auth.principals import parse_principals
    from tests.auth.helpers import AKID, allow_all, principals_doc

    other_secret = parse_principals(
        json.dumps(
            principals_doc(
                {
                    "name": "mallory",
                    "access_key_id": AKID,
                    "secret_access_key": "another-secret-entirely-0123456789",
                    "policies": [allow_all()],
                }
            )
        )
    )
    ours = checker(default_principals(), compiled=True)
    theirs = checker(other_secret, compiled=True)
    request = Received.of(base_wire())
    for _ in range(3):
        assert outcome(ours, request) == "alice"
        assert compiled_answer(ours, request).principal.name == "alice"
        assert compiled_answer(theirs, request) is None
        assert outcome(theirs, request) == (Refusal.INVALID_SIGNATURE, outcome(theirs, request)[1])
