"""The recorder's asynchronous series: backlog samples and finished requests become SageMaker's
async metrics, with SageMaker's dimensions and units, in a real `MetricsHistory`.

Ticks are called by hand with a chosen backlog, except where the recorder's own loop must await
the backlog source before it records an interval.
"""

from __future__ import annotations

import asyncio
import time

from polyhost.metrics.asynchronous import AsyncSeries, BacklogSample
from polyhost.metrics.history import MetricsHistory
from polyhost.metrics.query import Datapoint, Dimensions, MetricId, dimensions
from polyhost.metrics.recorder import MetricsRecorder

T0 = 1_699_999_980
SM = "AWS/SageMaker"
ENDPOINT = dimensions(EndpointName="ep")
VARIANT = dimensions(EndpointName="ep", VariantName="AllTraffic")


def points(history: MetricsHistory, name: str, dims: Dimensions, slots: int = 1) -> list[Datapoint]:
    return history.statistics(MetricId(SM, name, dims), T0, T0 + 10 * slots, 10, (50.0,))


def test_the_backlog_is_sampled_per_endpoint() -> None:
    history = MetricsHistory(clock=lambda: T0)
    recorder = MetricsRecorder(history, lambda: [], clock=lambda: T0)
    recorder.tick(T0, [BacklogSample("ep", 6, 42.5, 2), BacklogSample("idle", 0, 0.0, 1)])
    recorder.tick(T0 + 10, [BacklogSample("ep", 3, 7.0, 0)])  # its instances are gone
    size = points(history, "ApproximateBacklogSize", ENDPOINT, 2)
    assert [(p.maximum, p.unit) for p in size] == [(6.0, "None"), (3.0, "None")]
    per_instance = points(history, "ApproximateBacklogSizePerInstance", ENDPOINT, 2)
    assert [p.maximum for p in per_instance] == [3.0, 3.0]  # with no instance: all of it
    age = points(history, "ApproximateAgeOfOldestRequest", ENDPOINT, 2)
    assert [(p.maximum, p.unit) for p in age] == [(42.5, "Seconds"), (7.0, "Seconds")]
    without = points(history, "HasBacklogWithoutCapacity", ENDPOINT, 2)
    assert [p.maximum for p in without] == [0.0, 1.0]
    # An endpoint with nothing waiting still reports its zeros, as SageMaker's do.
    idle = dimensions(EndpointName="idle")
    assert [p.maximum for p in points(history, "ApproximateBacklogSize", idle)] == [0.0]
    assert [p.maximum for p in points(history, "HasBacklogWithoutCapacity", idle)] == [0.0]
    # No backlog series carries a variant: SageMaker publishes them per endpoint.
    assert points(history, "ApproximateBacklogSize", VARIANT) == []


def test_finished_requests_are_counted_per_variant_once() -> None:
    history = MetricsHistory(clock=lambda: T0)
    series = AsyncSeries()
    recorder = MetricsRecorder(history, lambda: [], clock=lambda: T0, async_series=series)
    series.finished("ep", "AllTraffic", ok=True, backlog_ms=200.0, total_ms=450.0)
    series.finished("ep", "AllTraffic", ok=True, backlog_ms=400.0, total_ms=900.0)
    series.finished("ep", "AllTraffic", ok=False, backlog_ms=600.0, total_ms=650.0)
    series.finished("ep", None, ok=False, backlog_ms=None, total_ms=61_000.0)  # expired
    recorder.tick(T0)
    recorder.tick(T0 + 10)  # nothing finished since: nothing recorded
    (processed,) = points(history, "InvocationsProcesssed", VARIANT, 2)
    assert (processed.sample_count, processed.sum, processed.unit) == (3.0, 3.0, "None")
    (failures,) = points(history, "InvocationFailures", VARIANT, 2)
    assert (failures.sample_count, failures.sum) == (3.0, 1.0)  # Average: the failure rate
    (backlog,) = points(history, "TimeInBacklog", VARIANT, 2)
    assert (backlog.sample_count, backlog.sum, backlog.unit) == (3.0, 1200.0, "Milliseconds")
    assert (backlog.minimum, backlog.maximum) == (200.0, 600.0)
    assert abs(backlog.percentiles[50.0] - 400.0) <= 400.0 * 0.02
    (total,) = points(history, "TotalProcessingTime", VARIANT, 2)
    assert (total.sample_count, total.sum, total.unit) == (3.0, 2000.0, "Milliseconds")
    # The one that expired before any variant ran it: under EndpointName alone, no backlog time.
    (expired,) = points(history, "InvocationFailures", ENDPOINT, 2)
    assert (expired.sample_count, expired.sum) == (1.0, 1.0)
    assert points(history, "TimeInBacklog", ENDPOINT, 2) == []
    assert [p.sum for p in points(history, "TotalProcessingTime", ENDPOINT, 2)] == [61_000.0]


def test_the_recorders_loop_awaits_the_backlog_before_each_interval() -> None:
    history = MetricsHistory(slot_s=1, memory_s=600, clock=time.time)
    counted: list[float] = []

    async def backlog() -> list[BacklogSample]:
        await asyncio.sleep(0)  # the real source awaits a worker thread
        counted.append(time.time())
        return [BacklogSample("ep", len(counted), 1.0, 1)]

    recorder = MetricsRecorder(history, lambda: [], interval_s=1, backlog=backlog)

    async def run() -> None:
        recorder.start(asyncio.get_running_loop())
        deadline = time.monotonic() + 20
        while len(counted) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await recorder.stop()

    started = time.time()
    asyncio.run(run())
    metric = MetricId(SM, "ApproximateBacklogSize", ENDPOINT)
    recorded = history.statistics(metric, started - 2, time.time() + 2, 1)
    assert len(counted) >= 2
    assert [p.maximum for p in recorded][:2] == [1.0, 2.0]


def test_a_failing_backlog_source_does_not_stop_the_other_series() -> None:
    history = MetricsHistory(slot_s=1, memory_s=600, clock=time.time)
    series = AsyncSeries()

    async def broken() -> list[BacklogSample]:
        raise RuntimeError("the queue is closed")

    recorder = MetricsRecorder(
        history, lambda: [], interval_s=1, backlog=broken, async_series=series
    )
    series.finished("ep", "AllTraffic", ok=True, backlog_ms=1.0, total_ms=2.0)

    async def run() -> None:
        recorder.start(asyncio.get_running_loop())
        deadline = time.monotonic() + 20
        while not history.list_metrics() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await recorder.stop()

    asyncio.run(run())
    names = {metric.name for metric, _ in history.list_metrics()}
    assert "InvocationsProcesssed" in names
    assert "ApproximateBacklogSize" not in names
