"""Types of the compiled accepting path of SigV4 verification (`_sigv4_fast.c`)."""

from collections.abc import Sequence

from polyhost.auth.sigv4 import FastEntry, Header, Verified

MAX_INLINE_BODY: int

def verify(
    heads: dict[bytes, FastEntry],
    services: frozenset[str],
    now: float | None,
    max_skew: float,
    method: str,
    headers: Sequence[Header],
    path: bytes,
    query: str | bytes,
    body: bytes | None,
    body_sha256: str | None = None,
) -> Verified | None: ...
def signing_states(key: bytes) -> bytes: ...
