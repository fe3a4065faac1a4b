"""The metric history: 10-second slots in memory, minute roll-ups on disk, bounded both ways.

Every test drives a real `MetricsHistory` on a real SQLite file in a temporary folder, with a
clock it sets by hand, so hours and days pass instantly and exactly.
"""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path

import pytest

from polyhost.metrics import catalog, sketch
from polyhost.metrics.catalog import MetricDef
from polyhost.metrics.cell import Cell
from polyhost.metrics.history import MEMORY_S, RETENTION_S, MetricsHistory, _plan
from polyhost.metrics.query import MetricId, dimensions

T0 = 1_699_999_980  # a minute boundary
LATENCY = MetricId(
    "AWS/SageMaker", "ContainerLatency", dimensions(EndpointName="e", ContainerName="a")
)
CALLS = MetricId("AWS/SageMaker", "Invocations", dimensions(EndpointName="e", ContainerName="a"))
CPU = MetricId("/aws/sagemaker/Endpoints", "CPUUtilization", dimensions(EndpointName="e"))


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def values_cell(values: list[float]) -> Cell:
    buckets: dict[int, int] = {}
    for value in values:
        key = sketch.bucket_key(value)
        buckets[key] = buckets.get(key, 0) + 1
    return Cell(len(values), sum(values), min(values), max(values), buckets)


def open_history(folder: Path, clock: Clock, **options: int) -> MetricsHistory:
    return MetricsHistory.open(folder, clock=clock, **options)


def record(
    history: MetricsHistory, at: float, metric: MetricId, definition: MetricDef, cell: Cell
) -> None:
    history.record(at, [(metric, definition, cell)])


def test_ten_second_periods_come_from_memory(tmp_path: Path) -> None:
    clock = Clock(T0 + 40)
    history = open_history(tmp_path, clock)
    record(history, T0, CALLS, catalog.INVOCATIONS, Cell.of_binary(3, 3))
    record(history, T0 + 20, CALLS, catalog.INVOCATIONS, Cell.of_binary(2, 2))
    points = history.statistics(CALLS, T0, T0 + 60, 10)
    assert [(p.timestamp, p.sum, p.sample_count) for p in points] == [
        (T0, 3.0, 3.0),
        (T0 + 20, 2.0, 2.0),
    ]
    assert points[0].unit == "None"
    (whole,) = history.statistics(CALLS, T0, T0 + 60, 30 * 2)
    assert (whole.timestamp, whole.sum, whole.minimum, whole.maximum) == (T0, 5.0, 1.0, 1.0)


def test_minute_periods_read_the_same_from_memory_disk_and_after_a_restart(tmp_path: Path) -> None:
    clock = Clock(T0)
    history = open_history(tmp_path, clock)
    rng = random.Random(5)
    everything: list[float] = []
    for slot in range(18):  # three minutes of 10-second slots
        values = [rng.lognormvariate(8.0, 0.7) for _ in range(200)]
        everything += values
        record(history, T0 + 10 * slot, LATENCY, catalog.CONTAINER_LATENCY, values_cell(values))
    clock.now = T0 + 180

    def read(h: MetricsHistory) -> list[float]:
        return [
            value
            for p in h.statistics(LATENCY, T0, T0 + 180, 60, (99.0,))
            for value in (p.timestamp, p.sample_count, p.sum, p.minimum, p.maximum,
                          p.percentiles[99.0])
        ]  # fmt: skip

    in_memory = read(history)
    assert len(in_memory) == 3 * 6 and sum(in_memory[1::6]) == 18 * 200
    assert history.flush(T0 + 180) == 3  # one row per minute
    assert read(history) == pytest.approx(in_memory)
    history.close()
    reopened = open_history(tmp_path, clock)
    assert read(reopened) == pytest.approx(in_memory)
    (summary,) = reopened.statistics(LATENCY, T0, T0 + 180, 180, (50.0, 99.9))
    ordered = sorted(everything)
    for percent in (50.0, 99.9):
        truth = ordered[math.floor(percent / 100 * (len(ordered) - 1))]
        assert summary.percentiles[percent] == pytest.approx(truth, rel=sketch.RELATIVE_ERROR)
    assert summary.sum == pytest.approx(sum(everything))
    assert (summary.minimum, summary.maximum) == (min(everything), max(everything))


def test_statistics_without_percentiles_are_summed_by_sqlite_the_same(tmp_path: Path) -> None:
    clock = Clock(T0)
    history = open_history(tmp_path, clock)
    for slot in range(36):
        record(history, T0 + 10 * slot, CPU, catalog.CPU, Cell.of_value(float(slot)))
    history.flush(T0 + 360)
    plain = history.statistics(CPU, T0, T0 + 360, 120)
    detailed = history.statistics(CPU, T0, T0 + 360, 120, (50.0,))
    assert [(p.timestamp, p.sample_count, p.sum, p.minimum, p.maximum) for p in plain] == [
        (p.timestamp, p.sample_count, p.sum, p.minimum, p.maximum) for p in detailed
    ]
    assert [p.sample_count for p in plain] == [12.0, 12.0, 12.0]
    assert plain[1].average == pytest.approx(17.5)


def test_a_minute_split_by_a_restart_is_merged_into_one_row(tmp_path: Path) -> None:
    clock = Clock(T0 + 25)
    first = open_history(tmp_path, clock)
    for slot in range(3):
        record(first, T0 + 10 * slot, CPU, catalog.CPU, Cell.of_value(10.0))
    first.flush(clock.now)  # what stop() does: the minute in progress goes to disk
    first.close()
    second = open_history(tmp_path, clock)
    for slot in range(2, 6):  # slot 2 again: the rest of the interval the restart split
        record(second, T0 + 10 * slot, CPU, catalog.CPU, Cell.of_value(30.0))
    (before_flush,) = second.statistics(CPU, T0, T0 + 60, 60, (90.0,))
    clock.now = T0 + 60
    second.flush(T0 + 60)
    (after_flush,) = second.statistics(CPU, T0, T0 + 60, 60, (90.0,))
    for point in (before_flush, after_flush):
        assert point.sample_count == 7.0
        assert point.sum == pytest.approx(3 * 10.0 + 4 * 30.0)
        assert (point.minimum, point.maximum) == (10.0, 30.0)
        assert point.percentiles[90.0] == pytest.approx(30.0, rel=sketch.RELATIVE_ERROR)


def test_binary_series_answer_exact_percentiles_and_keep_no_buckets(tmp_path: Path) -> None:
    history = open_history(tmp_path, Clock(T0 + 10))
    errors = MetricId("AWS/SageMaker", "Invocation5XXErrors", dimensions(EndpointName="e"))
    record(history, T0, errors, catalog.INVOCATION_5XX, Cell.of_binary(100, 3))
    (point,) = history.statistics(errors, T0, T0 + 10, 10, (50.0, 97.0, 98.0))
    assert point.average == pytest.approx(0.03)
    assert point.percentiles == {50.0: 0.0, 97.0: 0.0, 98.0: 1.0}


def test_the_ring_keeps_exactly_three_hours(tmp_path: Path) -> None:
    clock = Clock(T0)
    history = open_history(tmp_path, clock)
    slots = MEMORY_S // 10
    for slot in range(slots + 30):
        record(history, T0 + 10 * slot, CPU, catalog.CPU, Cell.of_value(1.0))
    clock.now = T0 + 10 * (slots + 30)
    points = history.statistics(CPU, T0, clock.now, 10)
    assert len(points) == slots
    assert points[0].timestamp == T0 + 300  # the 30 oldest slots are gone
    record(history, T0, CPU, catalog.CPU, Cell.of_value(1.0))  # too old for the ring: ignored
    assert len(history.statistics(CPU, T0, clock.now, 10)) == slots


def test_new_series_past_the_cap_are_dropped_while_all_are_live(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(T0)
    history = open_history(tmp_path, clock, max_series=2)
    metrics = [
        MetricId("AWS/SageMaker", "Invocations", dimensions(EndpointName=f"e{i}")) for i in range(3)
    ]
    with caplog.at_level(logging.WARNING, "polyhost.metrics"):
        for metric in metrics:
            record(history, T0, metric, catalog.INVOCATIONS, Cell.of_binary(1, 1))
    assert [m for m, _ in history.list_metrics()] == metrics[:2]
    assert history.dropped_series == 1
    assert "not recording 1 new series" in caplog.text
    assert history.statistics(metrics[2], T0, T0 + 10, 10) == []


def test_a_series_idle_for_three_hours_makes_room_and_leaves_the_disk(tmp_path: Path) -> None:
    clock = Clock(T0)
    history = open_history(tmp_path, clock, max_series=2)
    old, kept, new = (
        MetricId("AWS/SageMaker", "Invocations", dimensions(EndpointName=name))
        for name in ("deleted", "kept", "new")
    )
    record(history, T0, old, catalog.INVOCATIONS, Cell.of_binary(1, 1))
    history.flush(T0 + 60)
    later = T0 + MEMORY_S + 120
    clock.now = later
    record(history, later, kept, catalog.INVOCATIONS, Cell.of_binary(1, 1))
    record(history, later, new, catalog.INVOCATIONS, Cell.of_binary(1, 1))
    assert {m for m, _ in history.list_metrics()} == {kept, new}
    history.flush(later + 10)  # the evicted series' rows go in this transaction
    history.close()
    reopened = open_history(tmp_path, clock, max_series=2)
    assert {m for m, _ in reopened.list_metrics()} == {kept, new}
    assert reopened.statistics(old, T0, T0 + 60, 60) == []


def test_idle_series_lose_their_ring_and_old_rows_are_deleted(tmp_path: Path) -> None:
    clock = Clock(T0)
    history = open_history(tmp_path, clock)
    record(history, T0, CPU, catalog.CPU, Cell.of_value(5.0))
    record(history, T0 + 60, CALLS, catalog.INVOCATIONS, Cell.of_binary(1, 1))
    history.flush(T0 + 120)
    clock.now = T0 + MEMORY_S + 61
    history.expire(clock.now)
    assert history.statistics(CPU, T0, T0 + 10, 10) == []  # 10-second detail gone
    assert len(history.statistics(CPU, T0, T0 + 60, 60)) == 1  # the roll-up stays
    clock.now = T0 + RETENTION_S + 30  # CPU's row is past retention, CALLS' not yet
    history.expire(clock.now)
    assert history.statistics(CPU, T0, T0 + 60, 60) == []
    assert CPU not in {m for m, _ in history.list_metrics()}
    assert len(history.statistics(CALLS, T0, T0 + 120, 60)) == 1
    history.close()
    assert CPU not in {m for m, _ in open_history(tmp_path, clock).list_metrics()}


def test_every_series_is_listed_with_when_it_last_had_a_value(tmp_path: Path) -> None:
    history = open_history(tmp_path, Clock(T0 + 100))
    record(history, T0, CPU, catalog.CPU, Cell.of_value(1.0))
    record(history, T0 + 50, CPU, catalog.CPU, Cell.of_value(1.0))
    record(history, T0 + 20, CALLS, catalog.INVOCATIONS, Cell.of_binary(1, 1))
    assert dict(history.list_metrics()) == {CPU: T0 + 60, CALLS: T0 + 30}
    assert history.unit_of(CPU) == "Percent"


def test_a_history_without_a_store_keeps_memory_only() -> None:
    history = MetricsHistory(clock=Clock(T0))
    record(history, T0, CPU, catalog.CPU, Cell.of_value(4.0))
    assert history.flush(T0 + 60) == 0
    (point,) = history.statistics(CPU, T0, T0 + 60, 60)
    assert point.sum == 4.0


@pytest.mark.parametrize("seed", range(40))
def test_the_read_plan_covers_every_minute_once_inside_its_period(seed: int) -> None:
    rng = random.Random(seed)
    period = rng.choice([60, 120, 300, 600, 900, 3600, 7200, 86_400])
    start = T0 + 60 * rng.randrange(0, 2 * 1440)
    end = start + rng.randrange(1, 3 * 86_400)
    disk_until = start + rng.randrange(-600, 3 * 86_400)
    plan = _plan(start, end, period, disk_until, oldest=0)
    windows = sorted((m * 60, m * 60 + r * 60) for r, starts in plan.items() for m in starts)
    limit = math.ceil(end / 60) * 60
    covered: set[int] = set()
    for first, stop in windows:
        assert first <= disk_until and stop <= limit
        assert (first - start) // period == (stop - 1 - start) // period  # inside one period
        minutes = set(range(first, stop, 60))
        assert not minutes & covered
        covered |= minutes
    expected = {m for m in range(start, limit, 60) if m <= disk_until}
    assert expected <= covered
    if start % next(w for w in (3600, 300, 60) if period % w == 0) == 0:  # aligned
        widest = next(w for w in (3600, 300, 60) if period % w == 0)
        whole = [w for w in windows if w[1] - w[0] == widest]
        assert len(whole) >= len(windows) - 60  # only the period cut by end is finer


def test_coarse_roll_ups_answer_as_the_minutes_under_them(tmp_path: Path) -> None:
    clock = Clock(T0)
    history = open_history(tmp_path, clock)
    rng = random.Random(11)
    recorded: list[tuple[int, list[float]]] = []
    for slot in range(3 * 360):  # three hours
        values = [rng.lognormvariate(6.0, 0.8) for _ in range(rng.randrange(1, 30))]
        recorded.append((T0 + 10 * slot, values))
        record(history, T0 + 10 * slot, LATENCY, catalog.CONTAINER_LATENCY, values_cell(values))
        if (slot + 1) % 6 == 0:
            history.flush(T0 + 10 * (slot + 1))
    clock.now = T0 + 3 * 3600
    for offset, period in ((0, 3600), (0, 300), (120, 3600), (120, 300), (600, 7200), (0, 10_800)):
        start = T0 + offset
        points = history.statistics(LATENCY, start, clock.now, period, (50.0, 99.0))
        assert points, (offset, period)
        for point in points:
            values = [
                v
                for at, vs in recorded
                if point.timestamp <= at < point.timestamp + period
                for v in vs
            ]
            assert point.sample_count == len(values)
            assert point.sum == pytest.approx(sum(values))
            assert (point.minimum, point.maximum) == (min(values), max(values))
            ordered = sorted(values)
            for percent in (50.0, 99.0):
                truth = ordered[math.floor(percent / 100 * (len(ordered) - 1))]
                assert point.percentiles[percent] == pytest.approx(truth, rel=sketch.RELATIVE_ERROR)
