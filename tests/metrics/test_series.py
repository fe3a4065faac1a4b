"""The per-container series the hot path keeps: bucket placement must match Prometheus.

A Prometheus bucket `le="B"` counts observations at most B, so a value equal to a bound belongs
to that bound's bucket and anything past the last bound only to `+Inf`. The exposition sums the
raw counts into cumulative buckets, so one observation in the wrong slot skews every quantile a
dashboard computes.
"""

from __future__ import annotations

import itertools

import pytest

from polyhost.metrics.series import LATENCY_BUCKETS_US, ContainerCounters, LatencyHistogram

OVERFLOW = len(LATENCY_BUCKETS_US)  # the slot past the last bound: only +Inf counts it


def slot_of(value_us: float) -> int:
    """Which raw slot one observation lands in."""
    histogram = LatencyHistogram()
    histogram.observe(value_us)
    (slot,) = [i for i, count in enumerate(histogram.counts) if count]
    return slot


def test_bounds_are_strictly_increasing_from_100us_to_60s() -> None:
    assert LATENCY_BUCKETS_US[0] == 100 and LATENCY_BUCKETS_US[-1] == 60_000_000
    assert all(a < b for a, b in itertools.pairwise(LATENCY_BUCKETS_US))


def test_a_new_histogram_has_one_slot_per_bound_plus_overflow() -> None:
    histogram = LatencyHistogram()
    assert histogram.counts == [0] * (len(LATENCY_BUCKETS_US) + 1)
    assert (histogram.count, histogram.total) == (0, 0.0)


@pytest.mark.parametrize("index", range(len(LATENCY_BUCKETS_US)))
def test_a_value_on_a_bound_is_counted_in_that_bounds_bucket(index: int) -> None:
    bound = LATENCY_BUCKETS_US[index]
    assert slot_of(bound) == index
    assert slot_of(bound + 0.001) == index + 1
    assert slot_of(bound - 0.001) == index


@pytest.mark.parametrize("index", range(1, len(LATENCY_BUCKETS_US)))
def test_a_value_just_above_the_previous_bound_starts_the_next_bucket(index: int) -> None:
    previous = LATENCY_BUCKETS_US[index - 1]
    assert slot_of(previous + 0.5) == index


@pytest.mark.parametrize(("value", "slot"), [(0.0, 0), (-3.0, 0), (1e-9, 0), (99.99, 0)])
def test_small_and_odd_values_land_in_the_first_bucket(value: float, slot: int) -> None:
    assert slot_of(value) == slot


@pytest.mark.parametrize("value", [60_000_000.001, 1e12, float("inf")])
def test_values_past_60_seconds_are_counted_only_in_overflow(value: float) -> None:
    assert slot_of(value) == OVERFLOW


def test_total_and_count_follow_every_observation() -> None:
    histogram = LatencyHistogram()
    for value in (50.0, 100.0, 1_000.5, 70_000_000.0):
        histogram.observe(value)
    assert histogram.count == 4
    assert histogram.total == pytest.approx(70_001_150.5)
    assert sum(histogram.counts) == histogram.count
    assert histogram.counts[0] == 2  # 50 and 100 (on the bound)
    assert histogram.counts[LATENCY_BUCKETS_US.index(2_500)] == 1  # 1000.5 is past 1000
    assert histogram.counts[OVERFLOW] == 1


def test_histograms_never_share_their_slots() -> None:
    """Each container route has its own counters: a shared default list would merge them."""
    first, second = LatencyHistogram(), LatencyHistogram()
    first.observe(100)
    assert second.counts == [0] * (OVERFLOW + 1)
    a, b = ContainerCounters(), ContainerCounters()
    a.container_latency.observe(1)
    a.overhead_latency.observe(1)
    assert b.container_latency.count == 0 and b.overhead_latency.count == 0
    assert a.container_latency is not a.overhead_latency


def test_counters_start_at_zero() -> None:
    counters = ContainerCounters()
    assert (counters.invocations, counters.errors_4xx, counters.errors_5xx) == (0, 0, 0)
