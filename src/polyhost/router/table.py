"""The in-memory routing table: endpoint → variants → replicas → containers.

Built by the deployer once a container group is healthy and published to the router as a whole
(an atomic dict swap), so an invocation never touches the database and never sees a half-built
endpoint. The mutable parts are counters and a container's availability flag, both only touched
on the event loop thread.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from typing import Literal

from polyhost.router.upstream import UpstreamPool

Mode = Literal["Serial", "Direct"]


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


@dataclass(slots=True)
class ContainerRoute:
    hostname: str
    pool: UpstreamPool
    log_stream: str  # "{variant}/{instance}/{hostname}", as SageMaker names log streams
    available: bool = True
    unavailable_reason: str = ""
    counters: ContainerCounters = field(default_factory=ContainerCounters)


@dataclass(slots=True)
class ReplicaRoute:
    instance_id: str
    containers: tuple[ContainerRoute, ...]
    by_hostname: dict[str, ContainerRoute]
    outstanding: int = 0

    @classmethod
    def of(cls, instance_id: str, containers: tuple[ContainerRoute, ...]) -> ReplicaRoute:
        return cls(instance_id, containers, {c.hostname: c for c in containers})


@dataclass(slots=True)
class VariantRoute:
    name: str
    weight: float
    mode: Mode
    replicas: tuple[ReplicaRoute, ...]
    _next: int = 0

    def pick_replica(self) -> ReplicaRoute:
        """Least outstanding requests; ties broken round-robin so load spreads when idle."""
        replicas = self.replicas
        if len(replicas) == 1:
            return replicas[0]
        start = self._next
        self._next = (start + 1) % len(replicas)
        best = replicas[start]
        for offset in range(1, len(replicas)):
            candidate = replicas[(start + offset) % len(replicas)]
            if candidate.outstanding < best.outstanding:
                best = candidate
        return best


@dataclass(slots=True)
class EndpointRoute:
    name: str
    variants: tuple[VariantRoute, ...]
    by_name: dict[str, VariantRoute] = field(init=False)
    _cumulative: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.by_name = {v.name: v for v in self.variants}
        total = 0.0
        self._cumulative = []
        for variant in self.variants:
            total += max(variant.weight, 0.0)
            self._cumulative.append(total)

    def pick_variant(self) -> VariantRoute:
        """A variant at random in proportion to its weight (all weights 0: uniformly)."""
        if len(self.variants) == 1:
            return self.variants[0]
        total = self._cumulative[-1]
        if total <= 0:
            return random.choice(self.variants)
        index = bisect.bisect_right(self._cumulative, random.random() * total)
        return self.variants[min(index, len(self.variants) - 1)]
