"""Request ids for `x-amzn-RequestId`: UUID-shaped, unique per server run, cheap.

`uuid.uuid4()` reads 16 random bytes per call; on the invocation hot path a random per-process
prefix plus a counter gives the same uniqueness within a run at a fraction of the cost.
"""

from __future__ import annotations

import itertools
import os

_PREFIX = os.urandom(10).hex()
_PREFIX_DASHED = f"{_PREFIX[:8]}-{_PREFIX[8:12]}-{_PREFIX[12:16]}-{_PREFIX[16:20]}-".encode()
_COUNTER = itertools.count(1)


def next_request_id() -> bytes:
    return _PREFIX_DASHED + b"%012x" % (next(_COUNTER) & 0xFFFFFFFFFFFF)
