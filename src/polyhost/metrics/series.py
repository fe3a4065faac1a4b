"""The per-container series the invocation path keeps: counters and latency histograms.

They live on the routing table (one `ContainerCounters` per container route), so the hot path
pays one attribute lookup and a few integer adds per request; everything that reads them
(the Prometheus exposition, the metric history) reads these same objects.

Besides the cumulative Prometheus buckets (too coarse for percentiles: neighbouring bounds are
2-2.5x apart), each histogram keeps what happened since the metric recorder last looked: the
interval's exact minimum and maximum and its counts in fine logarithmic buckets
(`metrics/sketch.py`, 2% wide, so a percentile read from them is within 1% of the true value).
The recorder takes them every 10 seconds with `take_interval()`. That costs one `log` and one
dict add per observation (about 0.2 µs, bench/RESULTS.md), and the interval holds at most one
entry per fine bucket (`sketch.KEY_SPAN`), whatever the traffic.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from polyhost.metrics.sketch import INV_LOG_GAMMA, MAX_KEY, MAX_VALUE, MIN_VALUE, ZERO_KEY

# Latency histogram bounds in microseconds (Prometheus `le` buckets), 100 µs .. 60 s.
LATENCY_BUCKETS_US: tuple[float, ...] = (
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
)  # fmt: skip

_log = math.log
_floor = math.floor


@dataclass(frozen=True, slots=True)
class Interval:
    """What one histogram saw between two `take_interval()` calls."""

    minimum: float  # +inf when nothing was observed
    maximum: float  # -inf when nothing was observed
    buckets: dict[int, int]  # fine bucket key (metrics/sketch.py) -> observations


@dataclass(slots=True)
class LatencyHistogram:
    """Cumulative-on-read histogram: one bisect and two adds per observation, plus the
    interval's min, max and fine buckets for the metric history."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_US) + 1))
    total: float = 0.0
    count: int = 0
    interval_min: float = math.inf
    interval_max: float = -math.inf
    interval_buckets: dict[int, int] = field(default_factory=dict)

    def observe(self, value_us: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_US, value_us)] += 1
        self.total += value_us
        self.count += 1
        if value_us < self.interval_min:
            self.interval_min = value_us
        if value_us > self.interval_max:
            self.interval_max = value_us
        # sketch.bucket_key, inlined: a function call would cost as much as the rest.
        if MIN_VALUE <= value_us < MAX_VALUE:
            key = _floor(_log(value_us) * INV_LOG_GAMMA)
        elif value_us >= MAX_VALUE:
            key = MAX_KEY
        else:  # zero, negative, NaN
            key = ZERO_KEY
        buckets = self.interval_buckets
        try:
            buckets[key] += 1
        except KeyError:
            buckets[key] = 1

    def take_interval(self) -> Interval:
        """The interval since the last call, and start a new one (event loop only)."""
        interval = Interval(self.interval_min, self.interval_max, self.interval_buckets)
        self.interval_min = math.inf
        self.interval_max = -math.inf
        self.interval_buckets = {}
        return interval


@dataclass(slots=True)
class MultiModelCounters:
    """A MultiModel container's model series (`router/multi_model.py` keeps them).

    Only such a container has them (`ContainerCounters.multi_model`), so an ordinary
    invocation neither pays for them nor exposes empty series; a multi-model invocation adds
    one count and, when it waited for a load, one observation."""

    cache_hits: int = 0  # ModelCacheHit: invocations whose model was loaded already...
    cache_misses: int = 0  # ... and those that had to wait for a load (together, per invocation)
    loaded: int = 0  # LoadedModelCount: models loaded now (a gauge)
    loading_wait: LatencyHistogram = field(default_factory=LatencyHistogram)
    downloading: LatencyHistogram = field(default_factory=LatencyHistogram)
    loading: LatencyHistogram = field(default_factory=LatencyHistogram)
    unloading: LatencyHistogram = field(default_factory=LatencyHistogram)


@dataclass(slots=True)
class ContainerCounters:
    """Per-container series (CloudWatch names: docs/contract.md), cheap enough for the hot path."""

    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    container_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    overhead_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    # InvokeEndpointWithResponseStream: the streams among `invocations` (each also counted
    # there, its whole span in `container_latency`), and the time from sending the request
    # to the first byte of the answer's body (TimeToFirstByte, polyhost's own series).
    streams: int = 0
    time_to_first_byte: LatencyHistogram = field(default_factory=LatencyHistogram)
    # A Mode MultiModel container's model series; None for every other container.
    multi_model: MultiModelCounters | None = None
