"""Fixed logarithmic buckets: percentiles of many values kept as a few small counts.

A positive value v falls in bucket `floor(log(v) / log(GAMMA))`, the interval
[GAMMA^k, GAMMA^(k+1)); values below `MIN_VALUE` (zero included) share `ZERO_KEY`, values from
`MAX_VALUE` up share `MAX_KEY`. Because the buckets are fixed, counts from any number of
intervals, containers or minutes merge by adding them, so a roll-up stays exact whatever is
merged into it (the DDSketch construction, Masson et al., VLDB 2019).

Error bound: a bucket's value is the point of equal relative distance to both its ends, so a
percentile read from the counts is within `RELATIVE_ERROR` (0.99%) of the true value at that
rank, for every value in [MIN_VALUE, MAX_VALUE), as long as no bucket was collapsed.
Collapsing: a stored set keeps at most `MAX_STORED_BUCKETS` (1,024) buckets; past that, the
lowest ones are folded into the lowest kept one. 1,024 buckets of 2% span a factor of 6e8
(0.1 µs to a minute of latency, say), so real latencies are never folded; only a set whose
values spread further has its lowest percentiles overstated (never understated), while the
upper ones keep the bound. A stored set is thus at most 3 + 1,024 * 6 bytes (`encode`).
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Mapping

GAMMA = 1.02
LOG_GAMMA = math.log(GAMMA)
INV_LOG_GAMMA = 1.0 / LOG_GAMMA
RELATIVE_ERROR = (GAMMA - 1.0) / (GAMMA + 1.0)
MIN_VALUE = 1e-3
MAX_VALUE = 1e15
MIN_KEY = math.floor(math.log(MIN_VALUE) * INV_LOG_GAMMA)
MAX_KEY = math.floor(math.log(MAX_VALUE) * INV_LOG_GAMMA)
ZERO_KEY = -32768
KEY_SPAN = MAX_KEY - MIN_KEY + 2  # every key a set can ever hold, the zero key included
MAX_STORED_BUCKETS = 1024

_COUNT_TYPES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_SWAP = sys.byteorder == "big"  # stored little-endian whatever the machine


def bucket_key(value: float) -> int:
    """The bucket of `value` (the same arithmetic `LatencyHistogram.observe` inlines)."""
    if MIN_VALUE <= value < MAX_VALUE:
        return math.floor(math.log(value) * INV_LOG_GAMMA)
    if value >= MAX_VALUE:
        return MAX_KEY
    return ZERO_KEY


def bucket_value(key: int) -> float:
    """The value a bucket stands for: within RELATIVE_ERROR of anything in it."""
    if key == ZERO_KEY:
        return 0.0
    return 2.0 * GAMMA ** (key + 1) / (GAMMA + 1.0)


def merge_into(target: dict[int, int], source: Mapping[int, int]) -> None:
    for key, count in source.items():
        target[key] = target.get(key, 0) + count


def collapse(buckets: dict[int, int], limit: int = MAX_STORED_BUCKETS) -> dict[int, int]:
    """At most `limit` buckets: the lowest non-zero ones fold into the lowest one kept."""
    if len(buckets) <= limit:
        return buckets
    zero = buckets.get(ZERO_KEY, 0)
    keys = sorted(k for k in buckets if k != ZERO_KEY)
    room = limit - (1 if zero else 0)
    folded = keys[: len(keys) - room + 1]
    kept = {k: buckets[k] for k in keys[len(folded) :]}
    kept[folded[-1]] = sum(buckets[k] for k in folded)
    if zero:
        kept[ZERO_KEY] = zero
    return kept


def percentile(buckets: Mapping[int, int], percent: float, minimum: float, maximum: float) -> float:
    """The value at `percent` (0-100) of the counted values, clamped to [minimum, maximum].

    Rank r = percent/100 * (n - 1); the answer is the value of the bucket holding the value
    of rank floor(r) in sorted order (0-based), so it is within RELATIVE_ERROR of it.
    """
    total = sum(buckets.values())
    if total <= 0:
        return math.nan
    rank = percent / 100.0 * (total - 1)
    running = 0
    value = maximum
    for key in sorted(buckets):
        running += buckets[key]
        if running > rank:
            value = bucket_value(key)
            break
    return min(max(value, minimum), maximum)


def encode(buckets: Mapping[int, int]) -> bytes:
    """Compact bytes: width code, bucket count, int16 keys, then counts as narrow as fit."""
    if not buckets:
        return b""
    keys = array("h", sorted(buckets))
    largest = max(buckets.values())
    width = 1 if largest < 1 << 8 else 2 if largest < 1 << 16 else 4 if largest < 1 << 32 else 8
    counts = array(_COUNT_TYPES[width], (buckets[k] for k in keys))
    if _SWAP:
        keys.byteswap()
        counts.byteswap()
    return bytes((width,)) + len(keys).to_bytes(2, "little") + keys.tobytes() + counts.tobytes()


def decode(data: bytes) -> dict[int, int]:
    """The inverse of `encode`; ValueError when the bytes are not what it wrote."""
    if not data:
        return {}
    width = data[0]
    type_code = _COUNT_TYPES.get(width)
    if type_code is None or len(data) < 3:
        raise ValueError("not an encoded bucket set")
    size = int.from_bytes(data[1:3], "little")
    if len(data) != 3 + size * (2 + width):
        raise ValueError("encoded bucket set has the wrong length")
    keys = array("h")
    keys.frombytes(data[3 : 3 + 2 * size])
    counts = array(type_code)
    counts.frombytes(data[3 + 2 * size :])
    if _SWAP:
        keys.byteswap()
        counts.byteswap()
    return dict(zip(keys, counts, strict=True))
