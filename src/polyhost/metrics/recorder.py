"""Every 10 seconds, what each container did since the last look, into the metric history.

The invocation path only bumps `ContainerCounters` (`metrics/series.py`); this recorder, on the
event loop, reads the counters' deltas and takes their interval histograms, reads each
container's sampled CPU, memory and disk, and turns them into one `Cell` per series
(`metrics/catalog.py` names them):

- per container, dimensions EndpointName, VariantName, ContainerName: summed over replicas
  (as CloudWatch aggregates a dimension away); with InstanceId as well when the variant has
  more than one replica, so one replica's trouble can be told from the others;
- per variant, dimensions EndpointName, VariantName: ModelLatency (every container's latency
  in the variant; for a Serial pipeline each hop counts as one value, not their sum) and
  InvocationsPerInstance (requests entering the variant, each worth 1/instance count) and
  ConcurrentRequestsPerModel (requests served at once per instance, on average: the time the
  interval's requests spent in its containers over the interval, per instance);
- per inference component, dimension InferenceComponentName: its copies' Invocations, errors,
  ModelLatency, InvocationsPerCopy (each invocation worth 1/its copies, in AWS/SageMaker) and
  ConcurrentRequestsPerCopy (as ConcurrentRequestsPerModel, per copy),
  CPU and memory normalized to what each copy reserved, and
  NoCapacityInvocationFailures (counted by the router, since a component at 0 copies has no
  container);
- per variant its InstanceCount and per component its CopyCount (polyhost's own, beside
  ContainerUp): the instances and copies running, the capacity Application Auto Scaling sets;
- per MultiModel container, its model series as SageMaker names them: the load latencies,
  ModelCacheHit (0 or 1 per invocation, like the error series) and LoadedModelCount (sampled).

The invocation series have one value per request, as SageMaker's: Invocations is 1 per
request, the error series 0 or 1, so their Sum counts and their Average is the error rate. An
interval without requests records nothing for them. A request counts as an invocation when it
starts and as an error when it ends, so an error may land in the 10 s after its invocation;
SampleCount of an error series is then the larger of the two, and Sum stays exact.

Asynchronous endpoints add their own series (`metrics/asynchronous.py`): each interval the
recorder awaits the backlog's count (the queue's query, in a worker thread, before the
interval is recorded) and takes what the requests that finished did; both go in with the rest.

Once a minute the history writes its roll-ups to disk (in a worker thread); `stop()` records
the interval in progress and writes it too, so a restart loses nothing but 10-second detail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import shutil
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from polyhost.metrics import catalog
from polyhost.metrics.asynchronous import AsyncOutcomes, AsyncSeries, BacklogSample
from polyhost.metrics.catalog import Kind, MetricDef
from polyhost.metrics.cell import Cell, merge
from polyhost.metrics.collection import ContainerSample
from polyhost.metrics.history import MetricsHistory
from polyhost.metrics.query import MetricId, dimensions
from polyhost.metrics.series import ContainerCounters, LatencyHistogram, MultiModelCounters

log = logging.getLogger("polyhost.metrics")

INTERVAL_S = 10
SampleSource = Callable[[], Iterable[ContainerSample]]
DiskUsage = Callable[[Path], float]  # percent of the filesystem used
# Every asynchronous endpoint's backlog now; awaited once per interval, off the event loop
# where it reads the queue's database.
BacklogSource = Callable[[], Awaitable[Sequence[BacklogSample]]]
NoCapacitySource = Callable[[], Iterable[tuple[str, int]]]


def disk_percent(path: Path) -> float:
    usage = shutil.disk_usage(path)
    return 100.0 * usage.used / usage.total if usage.total else 0.0


@dataclass(slots=True)
class _Baseline:
    """What a container's counters said at the last look (they only ever grow)."""

    counters: ContainerCounters  # held so its id() is never reused while it is tracked
    invocations: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    container_count: int = 0
    container_total: float = 0.0
    overhead_count: int = 0
    overhead_total: float = 0.0
    first_byte_count: int = 0
    first_byte_total: float = 0.0
    restarts: int = 0
    setups: int = 0  # the number of the last container start already recorded
    cache_hits: int = 0
    cache_misses: int = 0
    # A MultiModel container's load histograms: (count, total) at the last look.
    model_latencies: dict[MetricDef, tuple[int, float]] = field(default_factory=dict)


Cells = dict[MetricDef, Cell]


class MetricsRecorder:
    def __init__(
        self,
        history: MetricsHistory,
        samples: SampleSource,
        *,
        interval_s: int = INTERVAL_S,
        clock: Callable[[], float] = time.time,
        disk_usage: DiskUsage = disk_percent,
        backlog: BacklogSource | None = None,
        async_series: AsyncSeries | None = None,
        no_capacity: NoCapacitySource | None = None,
    ) -> None:
        """`no_capacity`: each inference component's invocations that found no copy so far."""
        self._history = history
        self._no_capacity = no_capacity
        self._no_capacity_seen: dict[str, int] = {}
        self._backlog = backlog
        self.async_series = async_series
        self._samples = samples
        self._interval_s = interval_s
        self._clock = clock
        self._disk_usage = disk_usage
        self._baselines: dict[int, _Baseline] = {}
        self._task: asyncio.Task[None] | None = None
        self._flushed_minute = math.floor(clock() / 60)

    # -- lifetime --------------------------------------------------------------------------------
    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(self._run())

    async def stop(self) -> None:
        """Record the interval in progress and write everything to disk."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        now = self._clock()
        # The backlog is not counted again here: the queue closes before the recorder stops,
        # and the last interval's count was recorded.
        self.tick(math.floor(now / self._interval_s) * self._interval_s)
        try:
            await asyncio.to_thread(self._history.flush, now)
        except Exception:
            log.exception("could not write the metric history at shutdown")

    async def _run(self) -> None:
        step = self._interval_s
        last = -math.inf
        while True:
            now = self._clock()
            target = (math.floor(now / step) + 1) * step
            await asyncio.sleep(max(target - now, 0.0))
            # The loop's timer may fire a hair early (its clock is not the wall clock) or late;
            # early counts as on time, late takes the latest boundary passed.
            boundary = max(target, math.floor(self._clock() / step) * step)
            if boundary <= last:
                continue  # the wall clock went back: wait for a boundary not yet recorded
            last = boundary
            backlog = await self._count_backlog()
            try:
                self.tick(boundary - step, backlog)
            except Exception:
                log.exception("metric recording failed; the next interval will try again")
            minute = math.floor(boundary / 60)
            if minute > self._flushed_minute:
                try:
                    await asyncio.to_thread(self._history.flush, minute * 60)
                    self._flushed_minute = minute
                    await asyncio.to_thread(self._history.expire, boundary)
                except Exception:
                    log.exception("could not write the metric history; it stays in memory")

    async def _count_backlog(self) -> Sequence[BacklogSample]:
        if self._backlog is None:
            return ()
        try:
            return await self._backlog()
        except Exception:
            log.exception("could not count the asynchronous backlog; recording without it")
            return ()

    # -- one interval ---------------------------------------------------------------------------
    def tick(self, interval_start: float, backlog: Sequence[BacklogSample] = ()) -> None:
        """Record [interval_start, now): counters' deltas, one resource sample, and the
        asynchronous endpoints' `backlog` as counted for this interval."""
        samples = list(self._samples())
        replicas: dict[tuple[str, str], set[str]] = {}
        for sample in samples:
            replicas.setdefault((sample.endpoint_name, sample.variant_name), set()).add(
                sample.instance_id
            )
        per_container: dict[tuple[str, str, str], list[Cells]] = {}
        per_variant: dict[tuple[str, str], list[tuple[ContainerSample, Cells]]] = {}
        out: list[tuple[MetricId, MetricDef, Cell]] = []
        disk: dict[Path, float | None] = {}
        seen: set[int] = set()
        cells_of: dict[int, Cells] = {}
        for sample in samples:
            seen.add(id(sample.counters))
            cells = cells_of[id(sample)] = self._cells(sample, disk)
            key = (sample.endpoint_name, sample.variant_name)
            per_container.setdefault((*key, sample.container_name), []).append(cells)
            per_variant.setdefault(key, []).append((sample, cells))
            if len(replicas[key]) > 1:
                dims = dimensions(
                    EndpointName=sample.endpoint_name,
                    VariantName=sample.variant_name,
                    ContainerName=sample.container_name,
                    InstanceId=sample.instance_id,
                )
                out += [(MetricId(d.namespace, d.name, dims), d, c) for d, c in cells.items()]
        for (endpoint, variant, container), group in per_container.items():
            dims = dimensions(EndpointName=endpoint, VariantName=variant, ContainerName=container)
            for definition, cell in _combine(group).items():
                out.append(
                    (MetricId(definition.namespace, definition.name, dims), definition, cell)
                )
        for (endpoint, variant), members in per_variant.items():
            dims = dimensions(EndpointName=endpoint, VariantName=variant)
            instances = len(replicas[(endpoint, variant)])
            for definition, cell in _variant_cells(members, instances, self._interval_s):
                out.append(
                    (MetricId(definition.namespace, definition.name, dims), definition, cell)
                )
        out += _component_cells(samples, cells_of, self._interval_s)
        out += _capacity_cells(samples)
        out += self._no_capacity_cells()
        for gone in set(self._baselines) - seen:
            del self._baselines[gone]
        out += _backlog_cells(backlog)
        if self.async_series is not None:
            out += _outcome_cells(self.async_series.take())
        self._history.record(interval_start, out)

    def _cells(self, sample: ContainerSample, disk: dict[Path, float | None]) -> Cells:
        counters = sample.counters
        base = self._baselines.get(id(counters))
        if base is None:
            base = self._baselines[id(counters)] = _Baseline(counters)
        cells: Cells = {}
        invocations = max(counters.invocations - base.invocations, 0)
        errors_4xx = max(counters.errors_4xx - base.errors_4xx, 0)
        errors_5xx = max(counters.errors_5xx - base.errors_5xx, 0)
        base.invocations, base.errors_4xx = counters.invocations, counters.errors_4xx
        base.errors_5xx = counters.errors_5xx
        if invocations:
            cells[catalog.INVOCATIONS] = Cell.of_binary(invocations, invocations)
        for definition, errors in (
            (catalog.INVOCATION_4XX, errors_4xx),
            (catalog.INVOCATION_5XX, errors_5xx),
        ):
            if invocations or errors:
                cells[definition] = Cell.of_binary(max(invocations, errors), errors)
        latency = _latency(counters.container_latency, base.container_count, base.container_total)
        base.container_count = counters.container_latency.count
        base.container_total = counters.container_latency.total
        if latency is not None:
            cells[catalog.CONTAINER_LATENCY] = latency
        overhead = _latency(counters.overhead_latency, base.overhead_count, base.overhead_total)
        base.overhead_count = counters.overhead_latency.count
        base.overhead_total = counters.overhead_latency.total
        if overhead is not None:
            cells[catalog.OVERHEAD_LATENCY] = overhead
        first_byte = _latency(
            counters.time_to_first_byte, base.first_byte_count, base.first_byte_total
        )
        base.first_byte_count = counters.time_to_first_byte.count
        base.first_byte_total = counters.time_to_first_byte.total
        if first_byte is not None:
            cells[catalog.TIME_TO_FIRST_BYTE] = first_byte
        setup = _setup_time(sample.setups, base.setups)
        if sample.setups:
            base.setups = sample.setups[-1][0]
        if setup is not None:
            cells[catalog.MODEL_SETUP_TIME] = setup
        if counters.multi_model is not None:
            _model_cells(counters.multi_model, base, cells)
        cells[catalog.UP] = Cell.of_binary(1, 1 if sample.up else 0)
        cells[catalog.RESTARTS] = Cell.of_value(float(max(sample.restarts - base.restarts, 0)))
        base.restarts = sample.restarts
        usage = sample.usage
        if usage is not None:
            cells[catalog.CPU] = Cell.of_value(usage.cpu_percent)
            cells[catalog.MEMORY] = Cell.of_value(usage.memory_percent)
            cells[catalog.MEMORY_RSS] = Cell.of_value(float(usage.rss_bytes))
        if sample.model_dir is not None:
            if sample.model_dir not in disk:
                try:
                    disk[sample.model_dir] = self._disk_usage(sample.model_dir)
                except OSError:
                    disk[sample.model_dir] = None
            percent = disk[sample.model_dir]
            if percent is not None:
                cells[catalog.DISK] = Cell.of_value(percent)
        return cells

    def _no_capacity_cells(self) -> list[tuple[MetricId, MetricDef, Cell]]:
        """NoCapacityInvocationFailures per component: invocations that found no copy (a
        component at 0 copies has no container, so the count is the router's)."""
        if self._no_capacity is None:
            return []
        out: list[tuple[MetricId, MetricDef, Cell]] = []
        now: dict[str, int] = {}
        for name, count in self._no_capacity():
            now[name] = count
            delta = max(count - self._no_capacity_seen.get(name, 0), 0)
            if delta:
                definition = catalog.NO_CAPACITY_FAILURES
                dims = dimensions(InferenceComponentName=name)
                out.append(
                    (
                        MetricId(definition.namespace, definition.name, dims),
                        definition,
                        Cell.of_binary(delta, delta),
                    )
                )
        self._no_capacity_seen = now
        return out


def _component_cells(
    samples: list[ContainerSample], cells_of: dict[int, Cells], interval_s: float
) -> list[tuple[MetricId, MetricDef, Cell]]:
    """Each inference component's series (dimension InferenceComponentName): its copies'
    invocations, errors and latency (as ModelLatency), and their utilization normalized to
    what each copy reserved, averaged over the copies."""
    by_component: dict[str, list[ContainerSample]] = {}
    for sample in samples:
        if sample.inference_component is not None:
            by_component.setdefault(sample.inference_component, []).append(sample)
    out: list[tuple[MetricId, MetricDef, Cell]] = []
    renamed = {
        catalog.INVOCATIONS: catalog.INVOCATIONS,
        catalog.INVOCATION_4XX: catalog.INVOCATION_4XX,
        catalog.INVOCATION_5XX: catalog.INVOCATION_5XX,
        catalog.CONTAINER_LATENCY: catalog.MODEL_LATENCY,
    }
    for name, copies in by_component.items():
        dims = dimensions(InferenceComponentName=name)
        combined = _combine([cells_of[id(s)] for s in copies])
        for source, definition in renamed.items():
            cell = combined.get(source)
            if cell is not None:
                out.append(
                    (MetricId(definition.namespace, definition.name, dims), definition, cell)
                )
        calls = combined.get(catalog.INVOCATIONS)
        if calls is not None and calls.count:
            share = 1.0 / len(copies)
            per_copy = catalog.INVOCATIONS_PER_COPY
            out.append(
                (
                    MetricId(per_copy.namespace, per_copy.name, dims),
                    per_copy,
                    Cell(int(calls.count), calls.count * share, share, share),
                )
            )
        busy = combined.get(catalog.CONTAINER_LATENCY)
        if busy is not None and busy.count:
            concurrent = catalog.CONCURRENT_PER_COPY
            out.append(
                (
                    MetricId(concurrent.namespace, concurrent.name, dims),
                    concurrent,
                    Cell.of_value(_concurrency(busy.total, interval_s, len(copies))),
                )
            )
        cpu: list[Cell] = []
        memory: list[Cell] = []
        for sample in copies:
            usage = sample.usage
            if usage is None:
                continue
            if sample.reserved_cpus:
                cpu.append(Cell.of_value(usage.cpu_percent / sample.reserved_cpus))
            if sample.reserved_memory_mb:
                reserved = sample.reserved_memory_mb * 1024 * 1024
                memory.append(Cell.of_value(100.0 * usage.rss_bytes / reserved))
        for definition, values in (
            (catalog.CPU_NORMALIZED, cpu),
            (catalog.MEMORY_NORMALIZED, memory),
        ):
            if values:
                cell = merge(values, definition.kind, with_buckets=len(values) > 1)
                out.append(
                    (MetricId(definition.namespace, definition.name, dims), definition, cell)
                )
    return out


def _capacity_cells(samples: list[ContainerSample]) -> list[tuple[MetricId, MetricDef, Cell]]:
    """Each variant's instances and each component's copies running now (distinct instance
    ids of their containers), so a scaling action shows as a step of a recorded series."""
    instances: dict[tuple[str, str], set[str]] = {}
    copies: dict[str, set[str]] = {}
    for sample in samples:
        if sample.inference_component is None:
            key = (sample.endpoint_name, sample.variant_name)
            instances.setdefault(key, set()).add(sample.instance_id)
        else:
            copies.setdefault(sample.inference_component, set()).add(sample.instance_id)
    out: list[tuple[MetricId, MetricDef, Cell]] = []
    for (endpoint, variant), ids in instances.items():
        dims = dimensions(EndpointName=endpoint, VariantName=variant)
        definition = catalog.INSTANCE_COUNT
        out.append(
            (
                MetricId(definition.namespace, definition.name, dims),
                definition,
                Cell.of_value(float(len(ids))),
            )
        )
    for name, ids in copies.items():
        dims = dimensions(InferenceComponentName=name)
        definition = catalog.COPY_COUNT
        out.append(
            (
                MetricId(definition.namespace, definition.name, dims),
                definition,
                Cell.of_value(float(len(ids))),
            )
        )
    return out


def _latency(histogram: LatencyHistogram, count: int, total: float) -> Cell | None:
    interval = histogram.take_interval()
    observed = histogram.count - count
    if observed <= 0:
        return None
    return Cell(
        observed,
        histogram.total - total,
        interval.minimum,
        interval.maximum,
        interval.buckets,
    )


def _model_cells(multi: MultiModelCounters, base: _Baseline, cells: Cells) -> None:
    """A MultiModel container's model series for the interval, into `cells`."""
    hits = max(multi.cache_hits - base.cache_hits, 0)
    misses = max(multi.cache_misses - base.cache_misses, 0)
    base.cache_hits, base.cache_misses = multi.cache_hits, multi.cache_misses
    if hits or misses:
        cells[catalog.MODEL_CACHE_HIT] = Cell.of_binary(hits + misses, hits)
    for definition, histogram in (
        (catalog.MODEL_LOADING_WAIT_TIME, multi.loading_wait),
        (catalog.MODEL_DOWNLOADING_TIME, multi.downloading),
        (catalog.MODEL_LOADING_TIME, multi.loading),
        (catalog.MODEL_UNLOADING_TIME, multi.unloading),
    ):
        count, total = base.model_latencies.get(definition, (0, 0.0))
        cell = _latency(histogram, count, total)
        base.model_latencies[definition] = (histogram.count, histogram.total)
        if cell is not None:
            cells[definition] = cell
    cells[catalog.LOADED_MODEL_COUNT] = Cell.of_value(float(multi.loaded))


def _setup_time(setups: tuple[tuple[int, float], ...], seen: int) -> Cell | None:
    """The container starts numbered after `seen`, in µs, as one cell (None if there are none)."""
    values = [seconds * 1e6 for number, seconds in setups if number > seen]
    if not values:
        return None
    return merge([Cell.of_value(v) for v in values], Kind.LATENCY, with_buckets=True)


def _combine(group: list[Cells]) -> Cells:
    """One container's cells summed over its replicas."""
    if len(group) == 1:
        return group[0]
    merged: dict[MetricDef, list[Cell]] = {}
    for cells in group:
        for definition, cell in cells.items():
            merged.setdefault(definition, []).append(cell)
    return {
        d: merge(cells, d.kind, with_buckets=d.kind is not Kind.BINARY)
        for d, cells in merged.items()
    }


def _concurrency(latency_us_total: float, interval_s: float, units: int) -> float:
    """Requests served at once per instance or copy, on average over the interval (Little's
    law: the time the interval's requests spent in the containers over its length)."""
    return latency_us_total / 1e6 / max(interval_s, 1e-9) / max(units, 1)


def _variant_cells(
    members: list[tuple[ContainerSample, Cells]], instances: int, interval_s: float
) -> list[tuple[MetricDef, Cell]]:
    out: list[tuple[MetricDef, Cell]] = []
    latencies = [c[catalog.CONTAINER_LATENCY] for _, c in members if catalog.CONTAINER_LATENCY in c]
    if latencies:
        out.append((catalog.MODEL_LATENCY, merge(latencies, Kind.LATENCY, with_buckets=True)))
        # Every container's time counts: a Serial pipeline's request spends it in each hop.
        busy_us = sum(cell.total for cell in latencies)
        out.append(
            (
                catalog.CONCURRENT_PER_MODEL,
                Cell.of_value(_concurrency(busy_us, interval_s, instances)),
            )
        )
    setups = [c[catalog.MODEL_SETUP_TIME] for _, c in members if catalog.MODEL_SETUP_TIME in c]
    if setups:
        out.append((catalog.MODEL_SETUP_TIME, merge(setups, Kind.LATENCY, with_buckets=True)))
    requests = sum(
        int(c[catalog.INVOCATIONS].count)
        for sample, c in members
        if sample.entry and catalog.INVOCATIONS in c
    )
    if requests:
        share = 1.0 / instances
        out.append(
            (catalog.INVOCATIONS_PER_INSTANCE, Cell(requests, requests * share, share, share))
        )
    return out


def _backlog_cells(backlog: Sequence[BacklogSample]) -> list[tuple[MetricId, MetricDef, Cell]]:
    """Per asynchronous endpoint (dimension EndpointName), its backlog as sampled."""
    out: list[tuple[MetricId, MetricDef, Cell]] = []
    for sample in backlog:
        dims = dimensions(EndpointName=sample.endpoint)
        for definition, cell in (
            (catalog.APPROXIMATE_BACKLOG_SIZE, Cell.of_value(float(sample.size))),
            (catalog.APPROXIMATE_BACKLOG_SIZE_PER_INSTANCE, Cell.of_value(sample.per_instance)),
            (catalog.APPROXIMATE_AGE_OF_OLDEST_REQUEST, Cell.of_value(sample.oldest_age_s)),
            (
                catalog.HAS_BACKLOG_WITHOUT_CAPACITY,
                Cell.of_binary(1, 1 if sample.without_capacity else 0),
            ),
        ):
            out.append((MetricId(definition.namespace, definition.name, dims), definition, cell))
    return out


def _outcome_cells(
    taken: dict[tuple[str, str | None], AsyncOutcomes],
) -> list[tuple[MetricId, MetricDef, Cell]]:
    """Per variant, what its asynchronous requests that finished in the interval did."""
    out: list[tuple[MetricId, MetricDef, Cell]] = []
    for (endpoint, variant), outcomes in taken.items():
        if variant is None:
            dims = dimensions(EndpointName=endpoint)
        else:
            dims = dimensions(EndpointName=endpoint, VariantName=variant)
        cells: list[tuple[MetricDef, Cell | None]] = [
            (
                catalog.INVOCATIONS_PROCESSED,
                Cell.of_binary(outcomes.processed, outcomes.processed),
            ),
            (
                catalog.INVOCATION_FAILURES,
                Cell.of_binary(outcomes.processed, outcomes.failures),
            ),
            (catalog.TIME_IN_BACKLOG, _latency(outcomes.time_in_backlog, 0, 0.0)),
            (catalog.TOTAL_PROCESSING_TIME, _latency(outcomes.total_processing, 0, 0.0)),
        ]
        for definition, cell in cells:
            if cell is not None:
                out.append(
                    (MetricId(definition.namespace, definition.name, dims), definition, cell)
                )
    return out
