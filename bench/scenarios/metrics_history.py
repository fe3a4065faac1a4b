"""Scenario 7: the metric history's cost: per request, in memory, and to answer a dashboard.

In-process, on the real classes, so each number isolates one cost:
- the invocation path: what the router does per request to the counters (one invocation add,
  two latency observations), with this version's `LatencyHistogram` (interval min/max and fine
  buckets: recording on) and with the previous one (counters only: recording off), timed with
  `timeit`, best of 7;
- the recorder's 10-second tick for 15 containers, and the minute flush to SQLite, spread over
  the requests of the interval (at 20 requests/s per container);
- the history's memory for 15 containers after 3 hours (1,080 ticks), measured with
  tracemalloc (Python allocations; SQLite's own cache is not traced) and as RSS growth;
- GetMetricData over 24 hours of history for 15 containers (memory + roll-ups on disk), decoded,
  checked, answered and encoded as for a JSON 1.0 request; and the disk the roll-ups take.
"""

from __future__ import annotations

import bisect
import gc
import json
import math
import os
import random
import statistics
import time
import timeit
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.context import Context
from bench.report import Section
from polyhost.http.cloudwatch import CloudWatchRoute
from polyhost.http.cloudwatch_model import cloudwatch_model
from polyhost.metrics import catalog, sketch
from polyhost.metrics.cell import Cell
from polyhost.metrics.cloudwatch_api import CloudWatchApi
from polyhost.metrics.collection import ContainerSample, ResourceUsage
from polyhost.metrics.history import MetricsHistory
from polyhost.metrics.query import MetricId, dimensions
from polyhost.metrics.recorder import MetricsRecorder
from polyhost.metrics.series import LATENCY_BUCKETS_US, ContainerCounters

KEY = "metrics-history"
TITLE = "7. Metric history: invocation-path cost, memory, GetMetricData"
CONTAINERS = 15
REQUESTS_PER_TICK = 200  # per container and 10-second interval: 20 requests/s each
T0 = 1_700_000_040  # a minute boundary


@dataclass(slots=True)
class _PreviousHistogram:
    """`LatencyHistogram` as it was before the history (what the hot path paid then)."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_US) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value_us: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_US, value_us)] += 1
        self.total += value_us
        self.count += 1


@dataclass(slots=True)
class _PreviousCounters:
    invocations: int = 0
    container_latency: _PreviousHistogram = field(default_factory=_PreviousHistogram)
    overhead_latency: _PreviousHistogram = field(default_factory=_PreviousHistogram)


def _per_request_ns(counters: Any, number: int) -> float:
    """The router's per-request counter work, as in `Router._call` and `_direct`."""
    latencies = [random.lognormvariate(7.5, 0.6) for _ in range(1024)]

    def one_pass() -> None:
        c = counters
        for value in latencies:
            c.invocations += 1
            c.container_latency.observe(value)
            c.overhead_latency.observe(value * 0.1)

    passes = max(1, number // len(latencies))
    best = min(timeit.repeat(one_pass, number=passes, repeat=7))
    return best / (passes * len(latencies)) * 1e9


def _samples(counters: list[ContainerCounters], folder: Path) -> list[ContainerSample]:
    return [
        ContainerSample(
            endpoint_name="bench",
            variant_name="AllTraffic",
            instance_id="i-0",
            container_name=f"model{i}",
            counters=c,
            up=True,
            restarts=0,
            usage=ResourceUsage(random.uniform(0, 200), random.uniform(0, 5), 80_000_000),
            model_dir=folder,
        )
        for i, c in enumerate(counters)
    ]


def _traffic(counters: list[ContainerCounters], rng: random.Random) -> None:
    for c in counters:
        for _ in range(REQUESTS_PER_TICK):
            latency = rng.lognormvariate(7.5, 0.6)
            c.invocations += 1
            c.container_latency.observe(latency)
            c.overhead_latency.observe(latency * 0.05)
            if rng.random() < 0.02:
                c.errors_5xx += 1


def _fill_three_hours(folder: Path, ticks: int) -> dict[str, float]:
    """Recorder ticks with real traffic on real counters; memory of the history after."""
    rng = random.Random(1)
    counters = [ContainerCounters() for _ in range(CONTAINERS)]
    samples = _samples(counters, folder)
    clock = [float(T0)]
    gc.collect()
    rss_before = psutil.Process().memory_info().rss
    tracemalloc.start()
    history = MetricsHistory.open(folder, clock=lambda: clock[0])  # type: ignore[arg-type]
    recorder = MetricsRecorder(history, lambda: samples, clock=lambda: clock[0])
    tick_s: list[float] = []
    flush_s: list[float] = []
    for tick in range(ticks):
        _traffic(counters, rng)
        start = T0 + 10 * tick
        clock[0] = start + 10
        began = time.perf_counter()
        recorder.tick(start)
        tick_s.append(time.perf_counter() - began)
        if (start + 10) % 60 == 0:
            began = time.perf_counter()
            history.flush(start + 10)
            flush_s.append(time.perf_counter() - began)
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    rss_after = psutil.Process().memory_info().rss
    series = len(history.list_metrics())
    history.close()
    return {
        "series": series,
        "traced_mb": traced / 2**20,
        "rss_growth_mb": (rss_after - rss_before) / 2**20,
        "tick_ms": statistics.median(tick_s) * 1e3,
        "flush_ms": statistics.median(flush_s) * 1e3 if flush_s else math.nan,
    }


def _tick_cost(folder: Path, ticks: int) -> dict[str, float]:
    """The same ticks without tracemalloc, for their time."""
    rng = random.Random(2)
    counters = [ContainerCounters() for _ in range(CONTAINERS)]
    samples = _samples(counters, folder)
    clock = [float(T0)]
    history = MetricsHistory.open(folder, clock=lambda: clock[0])  # type: ignore[arg-type]
    recorder = MetricsRecorder(history, lambda: samples, clock=lambda: clock[0])
    tick_s: list[float] = []
    flush_s: list[float] = []
    for tick in range(ticks):
        _traffic(counters, rng)
        start = T0 + 10 * tick
        clock[0] = start + 10
        began = time.perf_counter()
        recorder.tick(start)
        tick_s.append(time.perf_counter() - began)
        if (start + 10) % 60 == 0:
            began = time.perf_counter()
            history.flush(start + 10)
            flush_s.append(time.perf_counter() - began)
    history.close()
    return {
        "tick_ms": statistics.median(tick_s) * 1e3,
        "flush_ms": statistics.median(flush_s) * 1e3,
    }


def _latency_pool(rng: random.Random, size: int = 64) -> list[Cell]:
    pool = []
    for _ in range(size):
        values = [rng.lognormvariate(7.5, 0.6) for _ in range(REQUESTS_PER_TICK)]
        buckets: dict[int, int] = {}
        for value in values:
            key = sketch.bucket_key(value)
            buckets[key] = buckets.get(key, 0) + 1
        pool.append(Cell(len(values), sum(values), min(values), max(values), buckets))
    return pool


def _fill_day(folder: Path, hours: int) -> tuple[MetricsHistory, float]:
    """`hours` of 10-second cells for 15 containers through `record` and the minute flushes
    (cells drawn from a pool: the history's work is the same, the drawing is not timed)."""
    rng = random.Random(3)
    pool = _latency_pool(rng)
    clock = [float(T0)]
    history = MetricsHistory.open(folder, clock=lambda: clock[0])  # type: ignore[arg-type]
    definitions = [
        catalog.INVOCATIONS, catalog.INVOCATION_4XX, catalog.INVOCATION_5XX,
        catalog.CONTAINER_LATENCY, catalog.OVERHEAD_LATENCY, catalog.CPU, catalog.MEMORY,
        catalog.DISK, catalog.MEMORY_RSS, catalog.RESTARTS, catalog.UP,
    ]  # fmt: skip
    ids = {
        (i, d): MetricId(
            d.namespace,
            d.name,
            dimensions(EndpointName="bench", VariantName="AllTraffic", ContainerName=f"model{i}"),
        )
        for i in range(CONTAINERS)
        for d in definitions
    }
    for tick in range(hours * 360):
        start = T0 + 10 * tick
        clock[0] = start + 10
        cells = []
        for (_, d), metric in ids.items():
            if d.kind is catalog.Kind.LATENCY:
                cell = pool[rng.randrange(len(pool))]
            elif d is catalog.INVOCATIONS:
                cell = Cell.of_binary(REQUESTS_PER_TICK, REQUESTS_PER_TICK)
            elif d.kind is catalog.Kind.BINARY:
                cell = Cell.of_binary(REQUESTS_PER_TICK, rng.randrange(5))
            elif d is catalog.RESTARTS:
                cell = Cell.of_value(0.0)
            else:
                cell = Cell.of_value(rng.uniform(0, 100))
            cells.append((metric, d, cell))
        history.record(start, cells)
        if (start + 10) % 60 == 0:
            history.flush(start + 10)
    return history, float(T0 + hours * 3600)


def _get_metric_data_ms(
    history: MetricsHistory, end: float, hours: int, period: int, runs: int
) -> tuple[float, float, int]:
    api = CloudWatchApi(history, clock=lambda: end)
    route = CloudWatchRoute(api)
    model = cloudwatch_model()
    queries = []
    for i in range(CONTAINERS):
        dims = [
            {"Name": "EndpointName", "Value": "bench"},
            {"Name": "VariantName", "Value": "AllTraffic"},
            {"Name": "ContainerName", "Value": f"model{i}"},
        ]
        for query_id, namespace, name, stat in (
            (f"calls{i}", "AWS/SageMaker", "Invocations", "Sum"),
            (f"p99_{i}", "AWS/SageMaker", "ContainerLatency", "p99"),
            (f"cpu{i}", "/aws/sagemaker/Endpoints", "CPUUtilization", "Average"),
        ):
            queries.append(
                {
                    "Id": query_id,
                    "MetricStat": {
                        "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": dims},
                        "Period": period,
                        "Stat": stat,
                    },
                }
            )
    body = json.dumps(
        {"MetricDataQueries": queries, "StartTime": end - hours * 3600, "EndTime": end}
    ).encode()
    times = []
    points = 0
    for _ in range(runs):
        began = time.perf_counter()
        status, _, payload = route._call("json", model, "GetMetricData", body, [], "bench")
        times.append(time.perf_counter() - began)
        assert status == 200, payload[:500]
        points = sum(len(r["Values"]) for r in json.loads(payload)["MetricDataResults"])
    return statistics.median(times) * 1e3, max(times) * 1e3, points


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    for old in work.glob("*/metrics.db*"):
        old.unlink()
    quick = ctx.quick
    number = 20_000 if quick else 400_000
    on_ns = _per_request_ns(ContainerCounters(), number)
    off_ns = _per_request_ns(_PreviousCounters(), number)
    ticks = 60 if quick else 1080
    (work / "memory").mkdir(exist_ok=True)
    (work / "ticks").mkdir(exist_ok=True)
    (work / "day").mkdir(exist_ok=True)
    memory = _fill_three_hours(work / "memory", ticks)
    cost = _tick_cost(work / "ticks", 60 if quick else 360)
    requests_per_tick = CONTAINERS * REQUESTS_PER_TICK
    amortized_us = (cost["tick_ms"] + cost["flush_ms"] / 6) * 1e3 / requests_per_tick
    hours = 2 if quick else 24
    began = time.perf_counter()
    history, end = _fill_day(work / "day", hours)
    fill_s = time.perf_counter() - began
    db = work / "day" / "metrics.db"
    disk_bytes = sum(p.stat().st_size for p in db.parent.glob("metrics.db*"))
    runs = 3 if quick else 15
    gmd = {period: _get_metric_data_ms(history, end, hours, period, runs) for period in (300, 60)}
    history.close()

    section.add(
        "In-process, on the real classes (see the scenario's docstring for what each row "
        f"covers). Traffic: {CONTAINERS} containers, {REQUESTS_PER_TICK} requests per container "
        "and 10-second interval (20/s each), lognormal latencies around 1.8 ms.",
        "",
    )
    section.table(
        ["invocation path", "value"],
        [
            ["counter work per request, recording off (previous histogram)", f"{off_ns:.0f} ns"],
            ["counter work per request, recording on", f"{on_ns:.0f} ns"],
            ["added by recording, per request", f"{on_ns - off_ns:.0f} ns"],
            [f"recorder tick, {CONTAINERS} containers (median)", f"{cost['tick_ms']:.2f} ms"],
            ["minute flush to SQLite (median)", f"{cost['flush_ms']:.2f} ms"],
            [
                f"tick + flush spread over the interval's {requests_per_tick:,} requests",
                f"{amortized_us:.2f} µs",
            ],
            ["total added per request", f"{(on_ns - off_ns) / 1e3 + amortized_us:.2f} µs"],
        ],
    )
    section.table(
        ["history for 15 containers", "value"],
        [
            ["series", f"{memory['series']:.0f}"],
            ["ticks recorded", f"{ticks} ({ticks * 10 / 3600:g} h)"],
            ["memory (tracemalloc, Python objects)", f"{memory['traced_mb']:.1f} MiB"],
            ["process RSS growth", f"{memory['rss_growth_mb']:.1f} MiB"],
            [
                f"roll-ups on disk after {hours} h (metrics.db + WAL)",
                f"{disk_bytes / 2**20:.1f} MiB",
            ],
            [
                "the same, extrapolated to 15 days",
                f"{disk_bytes / 2**20 * 15 * 24 / hours:.0f} MiB",
            ],
            [f"filling {hours} h through record + flush", f"{fill_s:.1f} s"],
        ],
    )
    section.add(
        "GetMetricData: 45 queries, 15 containers x (Invocations Sum, ContainerLatency p99, "
        "CPUUtilization Average), one JSON 1.0 request decoded, checked, answered and encoded.",
        "",
    )
    section.table(
        ["time range and period", "median", "max", "datapoints"],
        [
            [f"{hours} h, Period {period}", f"{median:.1f} ms", f"{worst:.1f} ms", points]
            for period, (median, worst, points) in gmd.items()
        ],
    )  # fmt: skip
    total_us = (on_ns - off_ns) / 1e3 + amortized_us
    section.target(
        "invocation-path cost of recording", f"{total_us:.2f} µs per request", "≤ 20 µs",
        total_us <= 20,
    )  # fmt: skip
    median_300 = gmd[300][0]
    section.target(
        f"GetMetricData, 15 containers over {hours} h (Period 300)", f"{median_300:.1f} ms",
        "< 50 ms", median_300 < 50,
    )  # fmt: skip
    ctx.save_raw(
        KEY,
        {"on_ns": on_ns, "off_ns": off_ns, "tick": cost, "memory": memory, "disk_bytes": disk_bytes,
         "get_metric_data": {str(k): v for k, v in gmd.items()}, "pid": os.getpid()},
    )  # fmt: skip
    return section
