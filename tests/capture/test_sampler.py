"""InitialSamplingPercentage, drawn per invocation (`capture/sampler.py`)."""

from __future__ import annotations

import random

import pytest

from polyhost.capture.sampler import Sampler


def test_all_and_nothing_are_exact() -> None:
    assert all(Sampler(100).sampled() for _ in range(10_000))
    assert not any(Sampler(0).sampled() for _ in range(10_000))


@pytest.mark.parametrize("percentage", [1, 10, 50, 90])
def test_a_share_is_drawn(percentage: int) -> None:
    sampler = Sampler(percentage, random.Random(7))
    drawn = sum(sampler.sampled() for _ in range(20_000))
    assert abs(drawn / 20_000 - percentage / 100) < 0.02


def test_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="0-100"):
        Sampler(101)
