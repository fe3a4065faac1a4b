"""Step scaling: which step adjustment an alarm's breach falls in, and the capacity it asks for.

Pure functions, as Application Auto Scaling documents them: the bounds of a step are relative
to the alarm's threshold (the breach is the aggregated metric minus the threshold); a lower
bound is inclusive and an upper bound exclusive above the threshold, the other way round below
it; a null bound is infinity. PercentChangeInCapacity rounds toward zero except that a change
between -1 and 1 is ±1, and MinAdjustmentMagnitude is its least absolute change.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from polyhost.errors import ValidationException

DEFAULT_COOLDOWN_S = 300


def _bounds(step: Mapping[str, Any]) -> tuple[float, float]:
    low = step.get("MetricIntervalLowerBound")
    high = step.get("MetricIntervalUpperBound")
    return (
        -math.inf if low is None else float(low),
        math.inf if high is None else float(high),
    )


def check_steps(config: Mapping[str, Any]) -> None:
    """The cross-field rules of StepScalingPolicyConfiguration; ValidationException otherwise."""
    steps = config.get("StepAdjustments") or []
    if not config.get("AdjustmentType"):
        raise ValidationException(
            "StepScalingPolicyConfiguration.AdjustmentType is required: ChangeInCapacity, "
            "PercentChangeInCapacity or ExactCapacity."
        )
    if not steps:
        raise ValidationException(
            "StepScalingPolicyConfiguration.StepAdjustments needs at least one step adjustment."
        )
    if config.get("MinAdjustmentMagnitude") is not None:
        if config["AdjustmentType"] != "PercentChangeInCapacity":
            raise ValidationException(
                "MinAdjustmentMagnitude applies to AdjustmentType PercentChangeInCapacity "
                "only: leave it out."
            )
        if int(config["MinAdjustmentMagnitude"]) < 0:
            raise ValidationException("MinAdjustmentMagnitude must be 0 or more.")
    if config.get("Cooldown") is not None and int(config["Cooldown"]) < 0:
        raise ValidationException("Cooldown must be 0 or more seconds.")
    intervals = sorted(_bounds(s) for s in steps)
    for low, high in intervals:
        if low >= high:
            raise ValidationException(
                f"A step adjustment's MetricIntervalLowerBound ({low}) must be below its "
                f"MetricIntervalUpperBound ({high})."
            )
    if (
        sum(1 for low, _ in intervals if low == -math.inf) > 1
        or sum(1 for _, high in intervals if high == math.inf) > 1
    ):
        raise ValidationException(
            "Only one step adjustment may leave MetricIntervalLowerBound out, and only one "
            "MetricIntervalUpperBound."
        )
    for (_, high), (low, _) in itertools.pairwise(intervals):
        if high != low:
            raise ValidationException(
                f"Step adjustments must not overlap or leave gaps: one ends at {high} and the "
                f"next starts at {low}."
            )


def find_step(steps: Sequence[Mapping[str, Any]], breach: float) -> Mapping[str, Any] | None:
    """The step whose interval holds `breach` (metric minus threshold), or None."""
    for step in steps:  # [low, high): a breach on a bound belongs to the step above it
        low, high = _bounds(step)
        if low <= breach < high:
            return step
    for step in steps:  # (low, high]: the top step's upper bound, below the threshold
        low, high = _bounds(step)
        if low < breach <= high:
            return step
    return None


def aggregate(values: Sequence[float], how: str | None) -> float:
    """The datapoints as MetricAggregationType says (Average by default)."""
    if how == "Minimum":
        return min(values)
    if how == "Maximum":
        return max(values)
    return sum(values) / len(values)


def stepped_capacity(config: Mapping[str, Any], current: int, adjustment: int) -> int:
    """The capacity `adjustment` asks for from `current`, before the target's min/max."""
    kind = config.get("AdjustmentType")
    if kind == "ExactCapacity":
        return adjustment
    if kind == "PercentChangeInCapacity":
        change = current * adjustment / 100.0
        if 0 < change < 1:
            delta = 1
        elif -1 < change < 0:
            delta = -1
        else:
            delta = int(change)  # toward zero
        least = config.get("MinAdjustmentMagnitude")
        if least is not None and delta != 0 and abs(delta) < int(least):
            delta = int(least) if delta > 0 else -int(least)
        return current + delta
    return current + adjustment
