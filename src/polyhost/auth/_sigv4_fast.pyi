"""Types of the compiled accepting path of SigV4 verification (`_sigv4_fast.c`)."""

from polyhost.auth.sigv4 import FastEntry, Header, Verified

MAX_INLINE_BODY: int

def verify(
    headers: list[Header] | tuple[Header, ...],
    method: str,
    path: bytes,
    query: str | bytes,
    body: bytes | None,
    body_sha256: str | None,
    heads: dict[bytes, FastEntry],
    services: frozenset[str],
    now: float,
    max_skew: float,
) -> Verified | None: ...
