"""Fixed log buckets: percentiles within the stated relative error, whatever the distribution.

The reference is the exact order statistic the sketch promises to approximate: with n values
sorted, the one of rank floor(q * (n - 1)). Distributions are drawn from a seeded generator so
a failure reproduces.
"""

from __future__ import annotations

import math
import random

import pytest

from polyhost.metrics import sketch

PERCENTS = (0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 100.0)


def exact(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[math.floor(percent / 100.0 * (len(ordered) - 1))]


def counted(values: list[float]) -> dict[int, int]:
    buckets: dict[int, int] = {}
    for value in values:
        key = sketch.bucket_key(value)
        buckets[key] = buckets.get(key, 0) + 1
    return buckets


def draw(name: str, n: int, rng: random.Random) -> list[float]:
    if name == "uniform":
        return [rng.uniform(100.0, 5_000.0) for _ in range(n)]
    if name == "lognormal":
        return [rng.lognormvariate(7.0, 1.5) for _ in range(n)]
    if name == "exponential":
        return [rng.expovariate(1 / 2_000.0) + 1.0 for _ in range(n)]
    if name == "bimodal":  # a fast path and a slow one, 100x apart
        return [rng.gauss(200.0, 10.0) if rng.random() < 0.9 else rng.gauss(20_000.0, 500.0)
                for _ in range(n)]  # fmt: skip
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["uniform", "lognormal", "exponential", "bimodal"])
def test_percentiles_are_within_the_stated_relative_error(name: str) -> None:
    rng = random.Random(name)
    values = draw(name, 20_000, rng)
    buckets = counted(values)
    assert len(buckets) <= sketch.MAX_STORED_BUCKETS  # these fit without collapsing
    for percent in PERCENTS:
        estimate = sketch.percentile(buckets, percent, min(values), max(values))
        truth = exact(values, percent)
        assert abs(estimate - truth) <= sketch.RELATIVE_ERROR * truth + 1e-9, (percent, estimate)


def test_the_stated_error_is_under_one_percent() -> None:
    assert sketch.RELATIVE_ERROR < 0.01


def test_merged_sets_answer_as_one_set_would() -> None:
    rng = random.Random(7)
    parts = [draw("lognormal", 3_000, rng) for _ in range(6)]
    merged: dict[int, int] = {}
    for part in parts:
        sketch.merge_into(merged, counted(part))
    everything = [v for part in parts for v in part]
    assert merged == counted(everything)
    for percent in (50.0, 99.0, 99.9):
        estimate = sketch.percentile(merged, percent, min(everything), max(everything))
        truth = exact(everything, percent)
        assert abs(estimate - truth) <= sketch.RELATIVE_ERROR * truth


def test_zero_and_odd_values_have_their_own_buckets() -> None:
    assert sketch.bucket_key(0.0) == sketch.ZERO_KEY
    assert sketch.bucket_key(-5.0) == sketch.ZERO_KEY
    assert sketch.bucket_key(math.nan) == sketch.ZERO_KEY
    assert sketch.bucket_key(math.inf) == sketch.MAX_KEY
    assert sketch.bucket_value(sketch.ZERO_KEY) == 0.0
    buckets = {sketch.ZERO_KEY: 3, sketch.bucket_key(10.0): 1}
    assert sketch.percentile(buckets, 50.0, 0.0, 10.0) == 0.0
    assert sketch.percentile(buckets, 100.0, 0.0, 10.0) == 10.0  # clamped to the maximum


def test_every_value_in_range_is_within_the_error_of_its_bucket() -> None:
    rng = random.Random(1)
    for _ in range(20_000):
        value = math.exp(rng.uniform(math.log(sketch.MIN_VALUE), math.log(1e12)))
        represented = sketch.bucket_value(sketch.bucket_key(value))
        assert abs(represented - value) <= sketch.RELATIVE_ERROR * value * (1 + 1e-12)


def test_the_key_range_is_bounded() -> None:
    keys = {sketch.bucket_key(10.0**e) for e in range(-10, 30)} | {sketch.bucket_key(0.0)}
    assert all(sketch.MIN_KEY <= k <= sketch.MAX_KEY or k == sketch.ZERO_KEY for k in keys)
    assert sketch.KEY_SPAN == sketch.MAX_KEY - sketch.MIN_KEY + 2


@pytest.mark.parametrize("largest", [1, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**40])
def test_encoding_round_trips_at_every_count_width(largest: int) -> None:
    buckets = {sketch.ZERO_KEY: 2, -300: 1, 5: largest, 1700: 7}
    encoded = sketch.encode(buckets)
    assert sketch.decode(encoded) == buckets
    assert sketch.decode(sketch.encode({})) == {}


def test_encoding_takes_about_two_bytes_a_bucket() -> None:
    buckets = {k: 1 for k in range(100, 106)}
    # flags, count and first key, one byte per step to the next key, one per count
    assert len(sketch.encode(buckets)) == 1 + 4 + 5 + 6
    with_zero = {**buckets, sketch.ZERO_KEY: 3}
    assert len(sketch.encode(with_zero)) == 1 + 1 + 4 + 5 + 6
    assert sketch.decode(sketch.encode(with_zero)) == with_zero


@pytest.mark.parametrize(
    "buckets",
    [
        {sketch.ZERO_KEY: 5},
        {7: 1},
        {-349: 1, 1744: 2},  # a step wider than a byte
        {sketch.ZERO_KEY: 1, -349: 300, 0: 70_000, 1: 1, 1744: 9},
    ],
)
@pytest.mark.parametrize("running", [False, True])
def test_odd_sets_round_trip(buckets: dict[int, int], running: bool) -> None:
    encoded = sketch.encode(buckets, running)
    assert sketch.decode(encoded) == buckets
    assert sketch.is_running(encoded) == running


@pytest.mark.parametrize("seed", range(30))
def test_percentiles_from_the_bytes_equal_those_of_the_decoded_set(seed: int) -> None:
    rng = random.Random(seed)
    values = [
        rng.choice([0.0, rng.lognormvariate(5.0, 2.0)]) for _ in range(rng.randrange(1, 3000))
    ]
    buckets = counted(values)
    encoded = sketch.encode(buckets)
    percents = [0.0, 10.0, 50.0, 90.0, 99.0, 99.9, 100.0, rng.uniform(0, 100)]
    low, high = min(values), max(values)
    expected = [sketch.percentile(buckets, p, low, high) for p in percents]
    assert sketch.percentiles_encoded(encoded, percents, low, high) == expected
    running = sketch.encode(buckets, running=True)
    assert sketch.percentiles_encoded(running, percents, low, high) == expected


@pytest.mark.parametrize(
    "garbage", [b"\x03\x01\x00\x00\x00", b"\x01\x05\x00\x00\x00", b"\x02", b"\xc1\x00\x00\x00\x00"]
)
def test_decoding_refuses_what_encode_did_not_write(garbage: bytes) -> None:
    with pytest.raises(ValueError):
        sketch.decode(garbage)


def test_collapsing_keeps_the_tail_exact_and_the_size_bounded() -> None:
    rng = random.Random(3)
    # Spread over 14 decades: more distinct buckets than are kept.
    values = [10 ** rng.uniform(-2.0, 12.0) for _ in range(50_000)] + [0.0] * 10
    buckets = counted(values)
    assert len(buckets) > sketch.MAX_STORED_BUCKETS
    kept = sketch.collapse(buckets)
    assert len(kept) <= sketch.MAX_STORED_BUCKETS
    assert sum(kept.values()) == len(values)
    assert kept[sketch.ZERO_KEY] == 10
    for percent in (99.0, 99.9):  # above the folded part: still within the error
        estimate = sketch.percentile(kept, percent, min(values), max(values))
        truth = exact(values, percent)
        assert abs(estimate - truth) <= sketch.RELATIVE_ERROR * truth
    low = sketch.percentile(kept, 1.0, min(values), max(values))
    assert low >= exact(values, 1.0)  # folded values are overstated, never understated


def test_collapse_leaves_small_sets_alone() -> None:
    buckets = {1: 1, 2: 2}
    assert sketch.collapse(buckets) is buckets
