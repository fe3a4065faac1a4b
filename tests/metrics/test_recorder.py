"""The recorder: counters' deltas and resource samples become the right series every interval.

The samples are real `ContainerSample`s around real `ContainerCounters`, bumped the way the
router bumps them; the history is a real `MetricsHistory`. Ticks are called by hand with chosen
interval starts, except where the recorder's own timing is the subject.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from pathlib import Path

import pytest

from polyhost.metrics.collection import ContainerSample, ResourceUsage
from polyhost.metrics.history import MetricsHistory
from polyhost.metrics.query import MetricId, dimensions
from polyhost.metrics.recorder import MetricsRecorder, disk_percent
from polyhost.metrics.series import ContainerCounters, MultiModelCounters

T0 = 1_699_999_980
SM = "AWS/SageMaker"
EP = "/aws/sagemaker/Endpoints"


def sample(
    container: str,
    counters: ContainerCounters,
    *,
    instance: str = "i-0",
    variant: str = "AllTraffic",
    usage: ResourceUsage | None = None,
    up: bool = True,
    restarts: int = 0,
    model_dir: Path | None = None,
    entry: bool = True,
    setups: tuple[tuple[int, float], ...] = (),
) -> ContainerSample:
    return ContainerSample(
        endpoint_name="ep",
        variant_name=variant,
        instance_id=instance,
        container_name=container,
        counters=counters,
        up=up,
        restarts=restarts,
        usage=usage,
        model_dir=model_dir,
        entry=entry,
        setups=setups,
    )


def call(counters: ContainerCounters, latency_us: float, status: int = 200) -> None:
    """What the router does for one container call that got an answer."""
    counters.invocations += 1
    counters.container_latency.observe(latency_us)
    counters.overhead_latency.observe(latency_us / 10)
    if status >= 500:
        counters.errors_5xx += 1
    elif status >= 400:
        counters.errors_4xx += 1


def container(name: str, **extra: str) -> MetricId:
    return MetricId(
        SM,
        name,
        dimensions(EndpointName="ep", VariantName="AllTraffic", ContainerName="a", **extra),
    )


def stat(
    history: MetricsHistory, metric: MetricId, start: float = T0, period: int = 10
) -> list[tuple[float, float]]:
    return [
        (p.sample_count, p.sum) for p in history.statistics(metric, start, start + period, period)
    ]


@pytest.fixture
def history() -> MetricsHistory:
    return MetricsHistory(clock=lambda: T0)


def test_each_interval_records_what_happened_in_it(history: MetricsHistory) -> None:
    counters = ContainerCounters()
    usage = ResourceUsage(cpu_percent=150.0, memory_percent=2.5, rss_bytes=50_000_000)
    samples = [sample("a", counters, usage=usage)]
    recorder = MetricsRecorder(history, lambda: samples, clock=lambda: T0)
    for latency, status in ((1000, 200), (2000, 200), (3000, 404), (4000, 500), (5000, 200)):
        call(counters, latency, status)
    recorder.tick(T0)
    call(counters, 7000)
    recorder.tick(T0 + 10)
    recorder.tick(T0 + 20)  # nothing happened: no invocation datapoint
    assert stat(history, container("Invocations")) == [(5.0, 5.0)]
    assert stat(history, container("Invocation4XXErrors")) == [(5.0, 1.0)]  # Average = rate
    assert stat(history, container("Invocation5XXErrors")) == [(5.0, 1.0)]
    assert stat(history, container("Invocations"), T0 + 10) == [(1.0, 1.0)]
    assert stat(history, container("Invocations"), T0 + 20) == []
    (latency,) = history.statistics(container("ContainerLatency"), T0, T0 + 10, 10, (50.0,))
    assert (latency.minimum, latency.maximum, latency.sum) == (1000.0, 5000.0, 15000.0)
    assert latency.percentiles[50.0] == pytest.approx(3000.0, rel=0.01)
    assert latency.unit == "Microseconds"
    (overhead,) = history.statistics(container("OverheadLatency"), T0, T0 + 10, 10)
    assert overhead.sum == pytest.approx(1500.0)
    resource = MetricId(EP, "CPUUtilization", container("x").dimensions)
    assert [p.average for p in history.statistics(resource, T0, T0 + 30, 10)] == [150.0] * 3
    rss = MetricId(EP, "MemoryRSS", container("x").dimensions)
    assert history.statistics(rss, T0, T0 + 10, 10)[0].maximum == 50_000_000


def test_an_error_answered_after_the_interval_of_its_call_still_counts(
    history: MetricsHistory,
) -> None:
    counters = ContainerCounters()
    recorder = MetricsRecorder(history, lambda: [sample("a", counters)], clock=lambda: T0)
    counters.invocations += 1  # a call starts...
    recorder.tick(T0)
    counters.errors_5xx += 1  # ...and times out in the next interval
    recorder.tick(T0 + 10)
    assert stat(history, container("Invocation5XXErrors"), T0, 60) == [(2.0, 1.0)]
    assert stat(history, container("Invocations"), T0, 60) == [(1.0, 1.0)]


def test_replicas_get_their_own_series_and_sum_up_without_instance_id(
    history: MetricsHistory,
) -> None:
    first, second = ContainerCounters(), ContainerCounters()
    samples = [
        sample("a", first, instance="i-0", usage=ResourceUsage(100.0, 1.0, 10)),
        sample("a", second, instance="i-1", usage=ResourceUsage(20.0, 1.0, 10)),
    ]
    recorder = MetricsRecorder(history, lambda: samples, clock=lambda: T0)
    for _ in range(3):
        call(first, 1000)
    call(second, 9000)
    recorder.tick(T0)
    assert stat(history, container("Invocations")) == [(4.0, 4.0)]
    assert stat(history, container("Invocations", InstanceId="i-0")) == [(3.0, 3.0)]
    assert stat(history, container("Invocations", InstanceId="i-1")) == [(1.0, 1.0)]
    cpu = MetricId(EP, "CPUUtilization", container("x").dimensions)
    (point,) = history.statistics(cpu, T0, T0 + 10, 10)
    assert (point.sample_count, point.minimum, point.maximum, point.average) == (
        2.0,
        20.0,
        100.0,
        60.0,
    )
    variant = dimensions(EndpointName="ep", VariantName="AllTraffic")
    (model,) = history.statistics(MetricId(SM, "ModelLatency", variant), T0, T0 + 10, 10)
    assert (model.sample_count, model.maximum) == (4.0, 9000.0)
    per_instance = MetricId(SM, "InvocationsPerInstance", variant)
    (share,) = history.statistics(per_instance, T0, T0 + 10, 10)
    assert (share.sample_count, share.sum) == (4.0, 2.0)  # 4 requests over 2 instances


def test_a_single_replica_has_no_instance_series(history: MetricsHistory) -> None:
    counters = ContainerCounters()
    recorder = MetricsRecorder(history, lambda: [sample("a", counters)], clock=lambda: T0)
    call(counters, 100)
    recorder.tick(T0)
    names = {m.dimension("InstanceId") for m, _ in history.list_metrics()}
    assert names == {None}


def test_a_pipeline_counts_its_requests_once_for_the_variant(history: MetricsHistory) -> None:
    head, tail = ContainerCounters(), ContainerCounters()
    samples = [sample("first", head, entry=True), sample("second", tail, entry=False)]
    recorder = MetricsRecorder(history, lambda: samples, clock=lambda: T0)
    for _ in range(5):
        call(head, 100)
        call(tail, 200)
    recorder.tick(T0)
    variant = dimensions(EndpointName="ep", VariantName="AllTraffic")
    per_instance = MetricId(SM, "InvocationsPerInstance", variant)
    assert stat(history, per_instance) == [(5.0, 5.0)]
    (model,) = history.statistics(MetricId(SM, "ModelLatency", variant), T0, T0 + 10, 10)
    assert model.sample_count == 10.0  # each hop is one value


def test_up_restarts_and_disk_are_sampled(history: MetricsHistory, tmp_path: Path) -> None:
    counters = ContainerCounters()
    state = {"up": True, "restarts": 0}

    def samples() -> list[ContainerSample]:
        return [
            sample(
                "a", counters, up=state["up"], restarts=int(state["restarts"]), model_dir=tmp_path
            )
        ]

    recorder = MetricsRecorder(history, samples, clock=lambda: T0)
    recorder.tick(T0)
    state.update(up=False, restarts=2)
    recorder.tick(T0 + 10)
    dims = container("x").dimensions
    up = history.statistics(MetricId(EP, "ContainerUp", dims), T0, T0 + 20, 10)
    assert [p.sum for p in up] == [1.0, 0.0]
    restarts = history.statistics(MetricId(EP, "ContainerRestarts", dims), T0, T0 + 20, 10)
    assert [p.sum for p in restarts] == [0.0, 2.0]
    (disk,) = history.statistics(MetricId(EP, "DiskUtilization", dims), T0, T0 + 10, 10)
    assert disk.average == pytest.approx(disk_percent(tmp_path), abs=1.0)
    assert 0.0 < disk.average <= 100.0


def test_each_container_start_is_one_model_setup_time_value_recorded_once(
    history: MetricsHistory,
) -> None:
    a, b = ContainerCounters(), ContainerCounters()
    state: dict[str, tuple[tuple[int, float], ...]] = {"a": ((1, 2.0),), "b": ((1, 4.0),)}

    def samples() -> list[ContainerSample]:
        return [sample("a", a, setups=state["a"]), sample("b", b, setups=state["b"])]

    recorder = MetricsRecorder(history, samples, clock=lambda: T0)
    recorder.tick(T0)
    recorder.tick(T0 + 10)  # nothing new: no value
    state["a"] = ((1, 2.0), (2, 0.5), (3, 1.5))  # two restarts of "a" in one interval
    recorder.tick(T0 + 20)
    variant = MetricId(
        SM, "ModelSetupTime", dimensions(EndpointName="ep", VariantName="AllTraffic")
    )
    points = history.statistics(variant, T0, T0 + 30, 10)
    assert [(p.timestamp, p.sample_count, p.sum) for p in points] == [
        (T0, 2, pytest.approx(6e6)),
        (T0 + 20, 2, pytest.approx(2e6)),
    ]
    assert (points[0].minimum, points[0].maximum) == (pytest.approx(2e6), pytest.approx(4e6))
    (only_a,) = history.statistics(container("ModelSetupTime"), T0 + 20, T0 + 30, 10)
    assert (only_a.minimum, only_a.maximum) == (pytest.approx(0.5e6), pytest.approx(1.5e6))


def test_a_new_route_starts_from_zero_and_the_old_one_is_forgotten(
    history: MetricsHistory,
) -> None:
    old, new = ContainerCounters(), ContainerCounters()
    current = [sample("a", old)]
    recorder = MetricsRecorder(history, lambda: current, clock=lambda: T0)
    for _ in range(4):
        call(old, 100)
    recorder.tick(T0)
    current[:] = [sample("a", new)]  # an update swapped the group in
    call(new, 100)
    recorder.tick(T0 + 10)
    assert stat(history, container("Invocations"), T0 + 10) == [(1.0, 1.0)]
    assert list(recorder._baselines) == [id(new)]


def test_the_recorder_ticks_on_interval_boundaries_and_stop_writes_the_rest(
    tmp_path: Path,
) -> None:
    """One-second intervals here. The loop's timer may fire a little before the wall clock
    reaches the boundary it slept for (it keeps its own clock); that must not shift data into
    the previous interval. The recorder's clock here reads 4 ms early on every second call,
    the one it makes on waking."""
    calls = itertools.count()

    def early_on_waking() -> float:
        return time.time() - (0.004 if next(calls) % 2 == 0 else 0.0)

    clock = time.time
    history = MetricsHistory.open(tmp_path, slot_s=1, memory_s=600, clock=clock)
    counters = ContainerCounters()
    recorder = MetricsRecorder(
        history, lambda: [sample("a", counters)], interval_s=1, clock=early_on_waking
    )
    started = clock()

    async def run() -> None:
        recorder.start(asyncio.get_running_loop())
        call(counters, 100)
        deadline = time.monotonic() + 30
        while not history.list_metrics() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        call(counters, 100)  # after the first tick: only stop() records it
        await recorder.stop()

    asyncio.run(run())
    first = history.statistics(container("Invocations"), math.floor(started) - 5, clock() + 5, 1)
    assert first and first[0].timestamp == math.floor(started)
    assert sum(p.sum for p in first) == 2.0
    history.close()
    reopened = MetricsHistory.open(tmp_path, slot_s=1, memory_s=600, clock=clock)
    minutes = reopened.statistics(
        container("Invocations"), math.floor(started / 60) * 60 - 60, clock() + 60, 60
    )
    assert sum(p.sum for p in minutes) == 2.0


def test_a_multi_model_containers_model_series(history: MetricsHistory) -> None:
    multi = MultiModelCounters()
    counters = ContainerCounters(multi_model=multi)
    plain = ContainerCounters()
    samples = [sample("a", counters), sample("b", plain)]
    recorder = MetricsRecorder(history, lambda: samples, clock=lambda: T0)
    multi.cache_misses += 2
    multi.cache_hits += 3
    for wait, download, load in ((9000.0, 3000.0, 5000.0), (12000.0, 4000.0, 7000.0)):
        multi.loading_wait.observe(wait)
        multi.downloading.observe(download)
        multi.loading.observe(load)
    multi.loaded = 2
    recorder.tick(T0)
    multi.unloading.observe(800.0)
    multi.loaded = 1
    recorder.tick(T0 + 10)
    assert stat(history, container("ModelCacheHit")) == [(5.0, 3.0)]  # Average = hit rate
    assert stat(history, container("ModelCacheHit"), T0 + 10) == []  # no invocation
    for name, total in (
        ("ModelLoadingWaitTime", 21000.0),
        ("ModelDownloadingTime", 7000.0),
        ("ModelLoadingTime", 12000.0),
    ):
        (point,) = history.statistics(container(name), T0, T0 + 10, 10)
        assert (point.sample_count, point.sum, point.unit) == (2.0, total, "Microseconds")
        assert stat(history, container(name), T0 + 10) == []
    assert stat(history, container("ModelUnloadingTime")) == []
    assert stat(history, container("ModelUnloadingTime"), T0 + 10) == [(1.0, 800.0)]
    loaded = MetricId(EP, "LoadedModelCount", container("x").dimensions)
    assert [p.maximum for p in history.statistics(loaded, T0, T0 + 20, 10)] == [2.0, 1.0]
    # The single-model container beside it has none of these series.
    other = dimensions(EndpointName="ep", VariantName="AllTraffic", ContainerName="b")
    assert history.statistics(MetricId(SM, "ModelCacheHit", other), T0, T0 + 20, 10) == []
    assert history.statistics(MetricId(EP, "LoadedModelCount", other), T0, T0 + 20, 10) == []


def test_concurrent_requests_per_model_is_the_time_in_containers_over_the_interval(
    history: MetricsHistory,
) -> None:
    """Little's law: 40 calls of 0.5 s on two instances in a 10 s interval kept each instance
    serving one request at a time on average; a pipeline's hops all count."""
    first, second, tail = ContainerCounters(), ContainerCounters(), ContainerCounters()
    samples = [
        sample("a", first, instance="i-0"),
        sample("a", second, instance="i-1"),
        sample("b", tail, instance="i-0", entry=False),
    ]
    recorder = MetricsRecorder(history, lambda: samples, clock=lambda: T0)
    for _ in range(20):
        call(first, 500_000)
        call(second, 300_000)
        call(tail, 200_000)  # the hop after `first` on i-0
    recorder.tick(T0)
    variant = dimensions(EndpointName="ep", VariantName="AllTraffic")
    (point,) = history.statistics(
        MetricId(SM, "ConcurrentRequestsPerModel", variant), T0, T0 + 10, 10
    )
    # (20 * 0.5 + 20 * 0.3 + 20 * 0.2) s = 20 s of requests in 10 s, over 2 instances.
    assert (point.sample_count, point.average) == (1.0, pytest.approx(1.0))
