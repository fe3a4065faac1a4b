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

import bisect
import itertools
import math
import operator
import sys
from array import array
from collections.abc import Mapping, Sequence
from typing import Literal

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
_VIEW_TYPES: dict[int, Literal["B", "H", "I", "Q"]] = {1: "B", 2: "H", 4: "I", 8: "Q"}
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


_HAS_ZERO = 0x10
_WIDE_STEPS = 0x20
_RUNNING = 0x40


def encode(buckets: Mapping[int, int], running: bool = False) -> bytes:
    """Compact bytes for a bucket set, about two bytes per bucket.

    Layout (little-endian): a flags byte (count width 1/2/4/8 in the low bits, `_HAS_ZERO`,
    `_WIDE_STEPS`, `_RUNNING`); the zero bucket's count if there is one; the number of other
    buckets (uint16); the first key (int16); the steps from each key to the next (one byte
    each, two if any step exceeds 255); then the counts, all as narrow as the largest allows.

    `running`: store each bucket's count plus all below it instead. That takes wider numbers
    (they grow to the total) but lets a percentile be found by one binary search in place;
    the coarse roll-ups that dashboards read are stored so.
    """
    zero = buckets.get(ZERO_KEY, 0)
    keys = sorted(k for k in buckets if k != ZERO_KEY)
    if not keys and not zero:
        return b""
    counts = [buckets[k] for k in keys]
    if running:
        counts = list(itertools.accumulate(counts, initial=zero))[1:]
    largest = max([zero, *counts])
    width = 1 if largest < 1 << 8 else 2 if largest < 1 << 16 else 4 if largest < 1 << 32 else 8
    steps = array("B" if not keys or keys[-1] - keys[0] < 256 or _narrow(keys) else "H")
    steps.extend(map(operator.sub, keys[1:], keys))
    flags = (
        width
        | (_HAS_ZERO if zero else 0)
        | (_WIDE_STEPS if steps.typecode == "H" else 0)
        | (_RUNNING if running else 0)
    )
    numbers = array(_COUNT_TYPES[width], counts)
    if _SWAP:
        steps.byteswap()
        numbers.byteswap()
    head = bytes((flags,))
    if zero:
        head += zero.to_bytes(width, "little")
    first = keys[0] if keys else 0
    head += len(keys).to_bytes(2, "little") + first.to_bytes(2, "little", signed=True)
    return head + steps.tobytes() + numbers.tobytes()


def is_running(data: bytes) -> bool:
    """Whether `data` was encoded with running counts."""
    return bool(data) and bool(data[0] & _RUNNING)


def _narrow(keys: Sequence[int]) -> bool:
    return all(b - a < 256 for a, b in itertools.pairwise(keys))


def _layout(data: bytes) -> tuple[int, int, int, int, int, int, int]:
    """Where the parts of an encoded set are: (width, zero count, bucket count, first key,
    step width, offset of the steps, offset of the counts); ValueError if it is not one."""
    flags = data[0]
    width = flags & 0x0F
    if width not in _COUNT_TYPES or flags & ~0x7F:
        raise ValueError("not an encoded bucket set")
    offset = 1
    zero = 0
    if flags & _HAS_ZERO:
        zero = int.from_bytes(data[offset : offset + width], "little")
        offset += width
    if len(data) < offset + 4:
        raise ValueError("encoded bucket set is cut short")
    size = int.from_bytes(data[offset : offset + 2], "little")
    first = int.from_bytes(data[offset + 2 : offset + 4], "little", signed=True)
    offset += 4
    step_width = 2 if flags & _WIDE_STEPS else 1
    counts_at = offset + max(size - 1, 0) * step_width
    if len(data) != counts_at + size * width:
        raise ValueError("encoded bucket set has the wrong length")
    return width, zero, size, first, step_width, offset, counts_at


def _numbers(data: bytes, start: int, stop: int, width: int) -> Sequence[int]:
    """Little-endian unsigned numbers of `width` bytes, without copying where possible."""
    if not _SWAP:
        return memoryview(data)[start:stop].cast(_VIEW_TYPES[width])
    numbers = array(_COUNT_TYPES[width])
    numbers.frombytes(data[start:stop])
    numbers.byteswap()
    return numbers


def _parts(data: bytes) -> tuple[int, list[int], Sequence[int]]:
    """The zero bucket's count, the other keys in order, and their counts."""
    width, zero, size, first, step_width, offset, counts_at = _layout(data)
    steps = _numbers(data, offset, counts_at, step_width)
    keys = list(itertools.accumulate(steps, initial=first)) if size else []
    counts = _numbers(data, counts_at, len(data), width)
    if data[0] & _RUNNING:
        counts = list(map(operator.sub, counts, itertools.chain((zero,), counts)))
    return zero, keys, counts


def decode(data: bytes) -> dict[int, int]:
    """The inverse of `encode`; ValueError when the bytes are not what it wrote."""
    if not data:
        return {}
    zero, keys, counts = _parts(data)
    out = dict(zip(keys, counts, strict=True))
    if zero:
        out[ZERO_KEY] = zero
    return out


def percentiles_encoded(
    data: bytes, percents: Sequence[float], minimum: float, maximum: float
) -> list[float]:
    """`percentile` for each of `percents`, straight from encoded bytes.

    The same answer as decoding first, several times faster: the counts are read in place,
    the running counts are one `accumulate` and each rank one `bisect`, and only the keys of
    the buckets found are summed from their steps, all in C. This is what a period made of
    one stored roll-up (the usual dashboard query) costs.
    """
    if not data:
        return [math.nan for _ in percents]
    width, zero, size, first, step_width, offset, counts_at = _layout(data)
    counts = _numbers(data, counts_at, len(data), width)
    if data[0] & _RUNNING:
        running, shift = counts, 0  # running[i]: every value up to bucket i; zero below all
    else:
        running, shift = list(itertools.accumulate(counts, initial=zero)), 1
    total = running[-1] if size else zero
    steps: Sequence[int] | None = None
    out: list[float] = []
    for percent in percents:
        rank = percent / 100.0 * (total - 1)
        if zero > rank:
            out.append(min(max(0.0, minimum), maximum))
            continue
        index = bisect.bisect_right(running, rank) - shift  # the bucket holding the rank
        if index < size:
            if steps is None:
                steps = _numbers(data, offset, counts_at, step_width)
            value = bucket_value(first + sum(steps[:index]))
        else:
            value = maximum
        out.append(min(max(value, minimum), maximum))
    return out
