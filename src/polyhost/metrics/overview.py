"""What each container did lately: the numbers of the dashboard's table and of `polyhost top`.

Two sources, each for what it knows best:
- the live `ContainerSample`s (taken on the event loop) say which containers exist now, whether
  each is up, how often it was restarted and its CPU and memory at this moment;
- the metric history (`MetricsReader`) says how many requests each one answered lately, how
  many failed and how long they took, as percentiles the Prometheus buckets are too coarse for.

"Lately" is one datapoint of the history ending at the last 10-second slot recorded: asked with
a period of `PERIOD_S` from `WINDOW_S` before that slot, it holds at least the last minute (the
history starts periods of whole minutes on a minute, so up to 50 s more). Rates are divided by
the span the datapoint really covers, so they stay right whatever the reader's alignment.
Nothing here runs on the event loop: reading the history may read its roll-ups on disk.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from polyhost.metrics import catalog
from polyhost.metrics.catalog import MetricDef
from polyhost.metrics.collection import ContainerSample
from polyhost.metrics.query import Datapoint, MetricId, MetricsReader, dimensions

SLOT_S = 10  # the recorder's interval: the history's newest data ends on a multiple of it
WINDOW_S = 60
PERIOD_S = 120  # > WINDOW_S + 50 s, so the window falls in one period however it is aligned


@dataclass(frozen=True, slots=True)
class ContainerOverview:
    """One container replica. The history's numbers are None when it has no data for them
    (no history kept, or no request in the window: then `requests_per_s` is 0.0)."""

    endpoint: str
    variant: str
    instance: str
    hostname: str
    up: bool
    restarts: int
    cpu_percent: float | None  # 100 = one core
    memory_percent: float | None
    rss_bytes: int | None
    requests_per_s: float | None
    error_rate: float | None  # share of requests answered 4xx or 5xx, 0..1
    p50_ms: float | None
    p99_ms: float | None
    window_s: float | None  # the span the history's numbers cover
    node: str | None = None  # the machine it runs on when not the server's (Ray backend)
    # A copy of an inference component: the component, and the endpoint instance it was
    # placed on (its `instance` is the copy's own id).
    component: str | None = None
    placed_on: int | None = None
    loaded_models: int | None = None  # a MultiModel container: the models it holds now

    @property
    def status(self) -> str:
        return "up" if self.up else "down"


def container_overviews(
    samples: Iterable[ContainerSample], reader: MetricsReader | None, now: float
) -> list[ContainerOverview]:
    """One row per container replica, ordered by endpoint, variant, instance, hostname."""
    samples = list(samples)
    replicas: dict[tuple[str, str], set[str]] = {}
    for sample in samples:
        replicas.setdefault((sample.endpoint_name, sample.variant_name), set()).add(
            sample.instance_id
        )
    end = math.floor(now / SLOT_S) * SLOT_S
    rows = []
    for sample in samples:
        several = len(replicas[(sample.endpoint_name, sample.variant_name)]) > 1
        rows.append(_overview(sample, reader, end, several))
    rows.sort(key=lambda r: (r.endpoint, r.variant, r.instance, r.hostname))
    return rows


def _overview(
    sample: ContainerSample, reader: MetricsReader | None, end: float, per_instance: bool
) -> ContainerOverview:
    usage = sample.usage
    requests_per_s = error_rate = p50 = p99 = window = None
    if reader is not None:
        # The recorder keeps an InstanceId series only when the variant has several replicas;
        # with one, the per-container series is that replica's.
        names = {
            "EndpointName": sample.endpoint_name,
            "VariantName": sample.variant_name,
            "ContainerName": sample.container_name,
        }
        if per_instance:
            names["InstanceId"] = sample.instance_id
        dims = dimensions(**names)

        def one(definition: MetricDef, percentiles: tuple[float, ...] = ()) -> Datapoint | None:
            metric = MetricId(definition.namespace, definition.name, dims)
            points = reader.statistics(metric, end - WINDOW_S, end, PERIOD_S, percentiles)
            return points[-1] if points else None

        invocations = one(catalog.INVOCATIONS)
        if invocations is None:
            requests_per_s = 0.0
        else:
            window = max(end - invocations.timestamp, float(SLOT_S))
            requests_per_s = invocations.sum / window
            failed = sum(
                point.sum
                for point in (one(catalog.INVOCATION_4XX), one(catalog.INVOCATION_5XX))
                if point is not None
            )
            # An error is counted when its request ends, possibly one interval after it began.
            error_rate = min(failed / invocations.sum, 1.0) if invocations.sum else None
            latency = one(catalog.CONTAINER_LATENCY, (50.0, 99.0))
            if latency is not None and latency.percentiles:
                p50 = latency.percentiles.get(50.0, math.nan) / 1000.0
                p99 = latency.percentiles.get(99.0, math.nan) / 1000.0
    return ContainerOverview(
        node=sample.node,
        component=sample.inference_component,
        placed_on=sample.placed_on,
        loaded_models=(
            None if sample.counters.multi_model is None else sample.counters.multi_model.loaded
        ),
        endpoint=sample.endpoint_name,
        variant=sample.variant_name,
        instance=sample.instance_id,
        hostname=sample.container_name,
        up=sample.up,
        restarts=sample.restarts,
        cpu_percent=None if usage is None else usage.cpu_percent,
        memory_percent=None if usage is None else usage.memory_percent,
        rss_bytes=None if usage is None else usage.rss_bytes,
        requests_per_s=requests_per_s,
        error_rate=error_rate,
        p50_ms=p50,
        p99_ms=p99,
        window_s=window,
    )
