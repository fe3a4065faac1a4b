"""A chart's data: one metric of one container (or variant) over a named range.

The dashboard and `polyhost top` ask for a few fixed ranges; each has a period chosen so a
chart gets at most a few hundred points, and every period is whole minutes, so the history
answers from its roll-ups (one row per period) rather than walking 10-second slots.

Which series: the history keeps a container's series per variant, and per replica as well when
the variant has several (dimension InstanceId). A query names the endpoint and the metric and
may narrow by container, variant and instance; without an instance it gets the series summed
over replicas. At most `MAX_SERIES` come back, so a query cannot make an answer of any size.
"""

from __future__ import annotations

from dataclasses import dataclass

from polyhost.metrics import catalog
from polyhost.metrics.catalog import Kind, MetricDef
from polyhost.metrics.query import Datapoint, MetricId, MetricsReader

# range name -> (seconds, period in seconds)
RANGES: dict[str, tuple[int, int]] = {
    "1h": (3600, 60),
    "3h": (3 * 3600, 60),
    "24h": (86400, 300),
    "7d": (7 * 86400, 3600),
}
MAX_SERIES = 32
PERCENTILES = (50.0, 99.0)
METRICS: dict[str, MetricDef] = {m.name: m for m in catalog.ALL}


@dataclass(frozen=True, slots=True)
class SeriesQuery:
    endpoint: str
    metric: MetricDef
    range_name: str = "1h"
    container: str | None = None
    variant: str | None = None
    instance: str | None = None


@dataclass(frozen=True, slots=True)
class Series:
    variant: str | None
    container: str | None
    instance: str | None
    unit: str
    datapoints: list[Datapoint]


def matching(reader: MetricsReader, query: SeriesQuery) -> list[MetricId]:
    """The series the query names, sorted, at most MAX_SERIES."""
    found: list[MetricId] = []
    for metric, _last_seen in reader.list_metrics():
        if metric.name != query.metric.name or metric.namespace != query.metric.namespace:
            continue
        if metric.dimension("EndpointName") != query.endpoint:
            continue
        if metric.dimension("ContainerName") != query.container:
            continue  # None asks for the variant's own series (ModelLatency...)
        if query.variant is not None and metric.dimension("VariantName") != query.variant:
            continue
        if metric.dimension("InstanceId") != query.instance:
            continue
        found.append(metric)
    found.sort(key=lambda m: m.dimensions)
    return found[:MAX_SERIES]


def chart(reader: MetricsReader, query: SeriesQuery, now: float) -> tuple[int, list[Series]]:
    """The period used and every matching series' datapoints over the range ending `now`."""
    span, period = RANGES[query.range_name]
    end = now
    start = end - span
    percentiles = PERCENTILES if query.metric.kind is Kind.LATENCY else ()
    out = []
    for metric in matching(reader, query):
        points = reader.statistics(metric, start, end, period, percentiles)
        out.append(
            Series(
                variant=metric.dimension("VariantName"),
                container=metric.dimension("ContainerName"),
                instance=metric.dimension("InstanceId"),
                unit=query.metric.unit,
                datapoints=points,
            )
        )
    return period, out
