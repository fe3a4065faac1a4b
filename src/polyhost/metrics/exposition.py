"""`GET /metrics`: every container's series in the Prometheus text format.

The hot path only bumps plain counters on the routing table (`router.table.ContainerCounters`);
this collector reads them, plus CPU and memory from the backend, when scraped. Series carry the
dimensions SageMaker uses in CloudWatch, `EndpointName`, `VariantName`, `ContainerName`, plus
the replica (`InstanceId`), with names after the CloudWatch metrics of CONTRACT.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from polyhost.deploy.group import RunningGroup
from polyhost.http.io import send_response
from polyhost.http.types import Receive, Scope, Send
from polyhost.router.table import LATENCY_BUCKETS_US, LatencyHistogram

LABELS = ["endpoint_name", "variant_name", "instance_id", "container_name"]
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def _buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    running = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip(LATENCY_BUCKETS_US, histogram.counts, strict=False):
        running += count
        buckets.append((f"{bound:g}", float(running)))
    buckets.append(("+Inf", float(histogram.count)))
    return buckets


class ContainerCollector(Collector):
    def __init__(self, groups: Callable[[], Sequence[RunningGroup]]) -> None:
        self._groups = groups

    def collect(self) -> Iterator[Metric]:
        invocations = CounterMetricFamily(
            "polyhost_invocations", "Requests sent to the container (Invocations).", labels=LABELS
        )
        errors_4xx = CounterMetricFamily(
            "polyhost_invocation_4xx_errors",
            "Requests the container answered with a 4xx (Invocation4XXErrors).",
            labels=LABELS,
        )
        errors_5xx = CounterMetricFamily(
            "polyhost_invocation_5xx_errors",
            "Requests that failed in or before the container: 5xx, timeout, unavailable "
            "(Invocation5XXErrors).",
            labels=LABELS,
        )
        container_latency = HistogramMetricFamily(
            "polyhost_container_latency_microseconds",
            "Time the container took to answer, seen from polyhost (ContainerLatency).",
            labels=LABELS,
        )
        overhead_latency = HistogramMetricFamily(
            "polyhost_overhead_latency_microseconds",
            "Time polyhost added to a request besides the containers (OverheadLatency).",
            labels=LABELS,
        )
        cpu = GaugeMetricFamily(
            "polyhost_container_cpu_utilization_percent",
            "CPU used by the container's processes, 100 = one core (CPUUtilization).",
            labels=LABELS,
        )
        memory = GaugeMetricFamily(
            "polyhost_container_memory_utilization_percent",
            "Resident memory of the container as a share of the machine (MemoryUtilization).",
            labels=LABELS,
        )
        rss = GaugeMetricFamily(
            "polyhost_container_memory_rss_bytes",
            "Resident memory of the container's processes.",
            labels=LABELS,
        )
        up = GaugeMetricFamily(
            "polyhost_container_up", "1 when the container is serving, 0 while down.", labels=LABELS
        )
        restarts = CounterMetricFamily(
            "polyhost_container_restarts", "Times the container was restarted.", labels=LABELS
        )
        for group in self._groups():
            for running in group.containers:
                route = running.route
                if route is None:
                    continue
                labels = [
                    group.spec.endpoint_name,
                    running.variant.variant_name,
                    running.stream.instance_id,
                    running.spec.hostname,
                ]
                counters = route.counters
                invocations.add_metric(labels, counters.invocations)
                errors_4xx.add_metric(labels, counters.errors_4xx)
                errors_5xx.add_metric(labels, counters.errors_5xx)
                container_latency.add_metric(
                    labels, _buckets(counters.container_latency), counters.container_latency.total
                )
                overhead_latency.add_metric(
                    labels, _buckets(counters.overhead_latency), counters.overhead_latency.total
                )
                up.add_metric(labels, 1.0 if route.available else 0.0)
                restarts.add_metric(labels, running.restarts)
                stats = running.handle.stats() if running.handle is not None else None
                if stats is not None:
                    cpu.add_metric(labels, stats.cpu_percent)
                    memory.add_metric(labels, stats.memory_percent)
                    rss.add_metric(labels, stats.rss_bytes)
        yield from (
            invocations, errors_4xx, errors_5xx, container_latency, overhead_latency,
            cpu, memory, rss, up, restarts,
        )  # fmt: skip


class MetricsRoute:
    """ASGI route for `GET /metrics`."""

    def __init__(self, groups: Callable[[], Sequence[RunningGroup]]) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(ContainerCollector(groups))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        body = generate_latest(self._registry)
        await send_response(send, 200, body, [(b"content-type", CONTENT_TYPE)])
        return 200
