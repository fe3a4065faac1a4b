"""Step scaling's pure parts: bounds, the adjustment's arithmetic, the cross-field rules."""

from __future__ import annotations

import pytest

from polyhost.autoscaling import step
from polyhost.errors import ValidationException

STEPS = [
    {"MetricIntervalUpperBound": 0.0, "ScalingAdjustment": -1},
    {"MetricIntervalLowerBound": 0.0, "MetricIntervalUpperBound": 10.0, "ScalingAdjustment": 1},
    {"MetricIntervalLowerBound": 10.0, "ScalingAdjustment": 3},
]


def test_the_breach_picks_its_step() -> None:
    assert step.find_step(STEPS, -5)["ScalingAdjustment"] == -1  # type: ignore[index]
    assert step.find_step(STEPS, 0)["ScalingAdjustment"] == 1  # type: ignore[index]
    assert step.find_step(STEPS, 9.9)["ScalingAdjustment"] == 1  # type: ignore[index]
    assert step.find_step(STEPS, 10)["ScalingAdjustment"] == 3  # type: ignore[index]
    assert step.find_step(STEPS[1:], -1) is None


def test_adjustment_types() -> None:
    assert step.stepped_capacity({"AdjustmentType": "ChangeInCapacity"}, 0, 1) == 1
    assert step.stepped_capacity({"AdjustmentType": "ExactCapacity"}, 5, 2) == 2
    percent = {"AdjustmentType": "PercentChangeInCapacity"}
    assert step.stepped_capacity(percent, 10, 25) == 12  # 2.5 rounds toward zero
    assert step.stepped_capacity(percent, 2, 10) == 3  # 0.2 is at least 1
    assert step.stepped_capacity(percent, 2, -10) == 1
    least = {**percent, "MinAdjustmentMagnitude": 3}
    assert step.stepped_capacity(least, 10, 10) == 13


def test_aggregation() -> None:
    assert step.aggregate([1, 2, 6], None) == 3
    assert step.aggregate([1, 2, 6], "Maximum") == 6
    assert step.aggregate([1, 2, 6], "Minimum") == 1


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"StepAdjustments": STEPS}, "AdjustmentType is required"),
        ({"AdjustmentType": "ChangeInCapacity", "StepAdjustments": []}, "at least one"),
        (
            {
                "AdjustmentType": "ChangeInCapacity",
                "StepAdjustments": [
                    {"MetricIntervalLowerBound": 0.0, "MetricIntervalUpperBound": 5.0,
                     "ScalingAdjustment": 1},
                    {"MetricIntervalLowerBound": 6.0, "ScalingAdjustment": 2},
                ],
            },
            "gaps",
        ),
        (
            {
                "AdjustmentType": "ChangeInCapacity",
                "StepAdjustments": [{"ScalingAdjustment": 1}, {"ScalingAdjustment": 2}],
            },
            "Only one",
        ),
        (
            {"AdjustmentType": "ChangeInCapacity", "MinAdjustmentMagnitude": 1,
             "StepAdjustments": STEPS},
            "PercentChangeInCapacity only",
        ),
    ],
)  # fmt: skip
def test_bad_configurations_say_what_to_fix(config: dict, says: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationException, match=says):
        step.check_steps(config)
    step.check_steps({"AdjustmentType": "ChangeInCapacity", "StepAdjustments": STEPS})
