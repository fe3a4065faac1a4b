"""The per-container series the invocation path keeps: counters and latency histograms.

They live on the routing table (one `ContainerCounters` per container route), so the hot path
pays one attribute lookup and a few integer adds per request; everything that reads them
(the Prometheus exposition now, history and CloudWatch later) reads these same objects.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# Latency histogram bounds in microseconds (Prometheus `le` buckets), 100 µs .. 60 s.
LATENCY_BUCKETS_US: tuple[float, ...] = (
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
)  # fmt: skip


@dataclass(slots=True)
class LatencyHistogram:
    """Cumulative-on-read histogram: one bisect and two adds per observation."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_US) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value_us: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_US, value_us)] += 1
        self.total += value_us
        self.count += 1


@dataclass(slots=True)
class ContainerCounters:
    """Per-container series (CloudWatch names in CONTRACT.md), cheap enough for the hot path."""

    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    container_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    overhead_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
