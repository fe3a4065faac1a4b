"""Collecting every container's series for Prometheus, from samples the deployer hands over.

`metrics/` knows nothing of groups, backends or HTTP: the deployer turns what runs into
`ContainerSample`s (labels, the route's counters, up, restarts, CPU and memory), and this
collector renders them under the CloudWatch names of docs/contract.md, with the dimensions SageMaker
uses (`EndpointName`, `VariantName`, `ContainerName`) plus the replica (`InstanceId`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from polyhost.metrics.series import (
    LATENCY_BUCKETS_US,
    ContainerCounters,
    LatencyHistogram,
    MultiModelCounters,
)

LABELS = ["endpoint_name", "variant_name", "instance_id", "container_name"]


@dataclass(frozen=True, slots=True)
class ResourceUsage:
    """CPU and memory of a container's processes at one moment."""

    cpu_percent: float  # 100 = one core
    memory_percent: float
    rss_bytes: int


@dataclass(frozen=True, slots=True)
class ContainerSample:
    """One running container as the metrics see it."""

    endpoint_name: str
    variant_name: str
    instance_id: str
    container_name: str
    counters: ContainerCounters
    up: bool
    restarts: int
    usage: ResourceUsage | None  # None when the backend cannot read it now
    # For the metric history: the folder whose filesystem DiskUtilization reports, and whether
    # the variant's requests enter through this container (every one in Direct mode, the first
    # of a Serial pipeline), which is what the variant's invocations are counted on.
    model_dir: Path | None = None
    entry: bool = True
    # Every start of this container so far (deploy and restarts), numbered from 1, with the
    # seconds each took until its first passed /ping; the recorder takes the ones it has not
    # seen (ModelSetupTime). Only the last few are kept, which a 10 s interval never outruns.
    setups: tuple[tuple[int, float], ...] = ()
    # The node the container runs on when that is another machine (Ray backend), else None.
    node: str | None = None
    # A copy of an inference component: its name, and what each copy reserved (its vCPUs and
    # MiB), which the component's normalized utilization is relative to.
    inference_component: str | None = None
    reserved_cpus: float | None = None
    reserved_memory_mb: int | None = None
    placed_on: int | None = None  # the endpoint instance the copy was placed on

    @property
    def labels(self) -> list[str]:
        return [self.endpoint_name, self.variant_name, self.instance_id, self.container_name]


SampleSource = Callable[[], Iterable[ContainerSample]]


def _buckets(histogram: LatencyHistogram) -> list[tuple[str, float]]:
    running = 0
    buckets: list[tuple[str, float]] = []
    for bound, count in zip(LATENCY_BUCKETS_US, histogram.counts, strict=False):
        running += count
        buckets.append((f"{bound:g}", float(running)))
    buckets.append(("+Inf", float(histogram.count)))
    return buckets


class ContainerCollector(Collector):
    def __init__(self, samples: SampleSource) -> None:
        self._samples = samples

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
        streams = CounterMetricFamily(
            "polyhost_invocation_streams",
            "InvokeEndpointWithResponseStream calls among the invocations (also counted there).",
            labels=LABELS,
        )
        time_to_first_byte = HistogramMetricFamily(
            "polyhost_time_to_first_byte_microseconds",
            "Time from sending a streamed call to the container until the first byte of its "
            "answer's body came (TimeToFirstByte, polyhost's own).",
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
        # A gauge of the last start, not a histogram: a sample remembers only its last few
        # starts, so a cumulative histogram could not be kept; the metric history has them all.
        starts = CounterMetricFamily(
            "polyhost_container_starts",
            "Times the container was started (deploy, restarts, serverless cold starts).",
            labels=LABELS,
        )
        setup = GaugeMetricFamily(
            "polyhost_model_setup_seconds",
            "Seconds the container's last start took until its first /ping passed "
            "(ModelSetupTime of that start).",
            labels=LABELS,
        )
        models = _ModelFamilies()
        for sample in self._samples():
            labels = sample.labels
            counters = sample.counters
            invocations.add_metric(labels, counters.invocations)
            errors_4xx.add_metric(labels, counters.errors_4xx)
            errors_5xx.add_metric(labels, counters.errors_5xx)
            container_latency.add_metric(
                labels, _buckets(counters.container_latency), counters.container_latency.total
            )
            overhead_latency.add_metric(
                labels, _buckets(counters.overhead_latency), counters.overhead_latency.total
            )
            streams.add_metric(labels, counters.streams)
            time_to_first_byte.add_metric(
                labels, _buckets(counters.time_to_first_byte), counters.time_to_first_byte.total
            )
            up.add_metric(labels, 1.0 if sample.up else 0.0)
            restarts.add_metric(labels, sample.restarts)
            if sample.setups:
                number, seconds = sample.setups[-1]
                starts.add_metric(labels, number)
                setup.add_metric(labels, seconds)
            if sample.usage is not None:
                cpu.add_metric(labels, sample.usage.cpu_percent)
                memory.add_metric(labels, sample.usage.memory_percent)
                rss.add_metric(labels, sample.usage.rss_bytes)
            if counters.multi_model is not None:
                models.add(labels, counters.multi_model)
        yield from (
            invocations, errors_4xx, errors_5xx, container_latency, overhead_latency,
            streams, time_to_first_byte, cpu, memory, rss, up, restarts, starts, setup,
        )  # fmt: skip
        if models.seen:  # only where some container serves many models
            yield from models.families()


class _ModelFamilies:
    """The model series of MultiModel containers (SageMaker's names in each help text)."""

    def __init__(self) -> None:
        self.seen = False
        self.cache_hits = CounterMetricFamily(
            "polyhost_model_cache_hits",
            "Invocations whose model was loaded already (ModelCacheHit 1).",
            labels=LABELS,
        )
        self.cache_misses = CounterMetricFamily(
            "polyhost_model_cache_misses",
            "Invocations that waited for their model to be loaded (ModelCacheHit 0).",
            labels=LABELS,
        )
        self.loaded = GaugeMetricFamily(
            "polyhost_loaded_models",
            "Models loaded in the container now (LoadedModelCount).",
            labels=LABELS,
        )
        self.histograms = [
            (
                HistogramMetricFamily(
                    f"polyhost_{name}_microseconds", f"{text} ({metric}).", labels=LABELS
                ),
                attribute,
            )
            for name, text, metric, attribute in (
                (
                    "model_loading_wait_time",
                    "Time an invocation waited for its model to be downloaded and loaded",
                    "ModelLoadingWaitTime",
                    "loading_wait",
                ),
                (
                    "model_downloading_time",
                    "Time a model's archive took to download and extract",
                    "ModelDownloadingTime",
                    "downloading",
                ),
                (
                    "model_loading_time",
                    "Time the container took to load a model",
                    "ModelLoadingTime",
                    "loading",
                ),
                (
                    "model_unloading_time",
                    "Time the container took to unload a model",
                    "ModelUnloadingTime",
                    "unloading",
                ),
            )
        ]

    def add(self, labels: list[str], multi: MultiModelCounters) -> None:
        self.seen = True
        self.cache_hits.add_metric(labels, multi.cache_hits)
        self.cache_misses.add_metric(labels, multi.cache_misses)
        self.loaded.add_metric(labels, multi.loaded)
        for family, attribute in self.histograms:
            histogram: LatencyHistogram = getattr(multi, attribute)
            family.add_metric(labels, _buckets(histogram), histogram.total)

    def families(self) -> Iterator[Metric]:
        yield from (self.cache_hits, self.cache_misses, self.loaded)
        yield from (family for family, _ in self.histograms)


def container_registry(samples: SampleSource) -> CollectorRegistry:
    """A registry holding only polyhost's container series (no process or GC collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ContainerCollector(samples))
    return registry
