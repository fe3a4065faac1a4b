"""The access-control state of a server: principals, verifier and authorizer, swapped as one.

A reload (SIGHUP) builds a new `AccessControl` from the file and replaces the reference in one
assignment, so no request ever sees the new keys with the old policies or the old cache; a file
that fails validation raises `PolicyError` and the running state stays as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from polyhost.auth.authorizer import Authorizer
from polyhost.auth.cache import DEFAULT_SIZE
from polyhost.auth.principals import PrincipalSet, load_principals
from polyhost.auth.sigv4 import MAX_SKEW_S, SigV4Verifier


@dataclass(frozen=True, slots=True)
class AccessControl:
    principals: PrincipalSet
    verifier: SigV4Verifier
    authorizer: Authorizer

    @classmethod
    def from_principals(
        cls,
        principals: PrincipalSet,
        *,
        region: str,
        clock: Callable[[], float] = time.time,
        max_skew_s: float = MAX_SKEW_S,
        cache_size: int = DEFAULT_SIZE,
    ) -> AccessControl:
        # The set never changes (a reload makes a new one), as the compiled path requires.
        verifier = SigV4Verifier(
            principals.lookup, region=region, clock=clock, max_skew_s=max_skew_s, compiled=True
        )
        return cls(principals, verifier, Authorizer(cache_size))

    @classmethod
    def load(
        cls,
        path: Path,
        *,
        region: str,
        clock: Callable[[], float] = time.time,
        max_skew_s: float = MAX_SKEW_S,
        cache_size: int = DEFAULT_SIZE,
    ) -> AccessControl:
        """Read `path` (raises PolicyError or OSError) and build the state around it."""
        return cls.from_principals(
            load_principals(path),
            region=region,
            clock=clock,
            max_skew_s=max_skew_s,
            cache_size=cache_size,
        )
