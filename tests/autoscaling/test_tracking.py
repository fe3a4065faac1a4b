"""Target tracking's pure parts: the metric tracked, the alarms made, the capacity asked for."""

from __future__ import annotations

import pytest

from polyhost.autoscaling import tracking
from polyhost.errors import ValidationException

PER_COPY = {"PredefinedMetricType": "SageMakerInferenceComponentInvocationsPerCopy"}


def test_predefined_metrics_are_sagemakers() -> None:
    metric = tracking.tracked_metric({"PredefinedMetricSpecification": PER_COPY}, "ic", None)
    assert metric == {
        "MetricName": "InvocationsPerCopy",
        "Namespace": "AWS/SageMaker",
        "Dimensions": [{"Name": "InferenceComponentName", "Value": "ic"}],
        "Statistic": "Sum",
        "Period": 60,
    }
    variant = tracking.tracked_metric(
        {"PredefinedMetricSpecification": {
            "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}},
        "ep", "AllTraffic",
    )  # fmt: skip
    assert variant["MetricName"] == "InvocationsPerInstance"
    assert len(variant["Dimensions"]) == 2
    # The high-resolution ones: the average concurrency, judged on 10-second periods.
    for kind, name, resource in (
        ("SageMakerVariantConcurrentRequestsPerModelHighResolution",
         "ConcurrentRequestsPerModel", "AllTraffic"),
        ("SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution",
         "ConcurrentRequestsPerCopy", None),
    ):  # fmt: skip
        found = tracking.tracked_metric(
            {"PredefinedMetricSpecification": {"PredefinedMetricType": kind}}, "ep", resource
        )
        assert (found["MetricName"], found["Statistic"], found["Period"]) == (name, "Average", 10)
        alarm = tracking.alarm_definition("high", found, 2.0, "arn:p", True)
        assert alarm["Period"] == 10


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({}, "exactly one"),
        ({"PredefinedMetricSpecification": {"PredefinedMetricType": "ALBRequestCountPerTarget"}},
         "not a SageMaker metric"),
        ({"PredefinedMetricSpecification": {"PredefinedMetricType":
          "SageMakerVariantProvisionedConcurrencyUtilization"}},
         "not recorded"),
        ({"PredefinedMetricSpecification": {"PredefinedMetricType":
          "SageMakerVariantInvocationsPerInstance"}}, "does not apply"),
        ({"CustomizedMetricSpecification": {"Metrics": [{"Id": "m"}]}}, "metric math"),
        ({"CustomizedMetricSpecification": {"MetricName": "x"}}, "Namespace, Statistic"),
    ],
)  # fmt: skip
def test_refusals_say_what_to_give(config: dict, says: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationException, match=says):
        tracking.tracked_metric(config, "ic", None)


def test_the_alarms_are_awss() -> None:
    high, low = tracking.alarm_names("inference-component/ic")
    assert high.startswith("TargetTracking-inference-component/ic-AlarmHigh-")
    assert low.startswith("TargetTracking-inference-component/ic-AlarmLow-")
    metric = tracking.tracked_metric({"PredefinedMetricSpecification": PER_COPY}, "ic", None)
    up = tracking.alarm_definition(high, metric, 10, "arn:p", True)
    down = tracking.alarm_definition(low, metric, 10, "arn:p", False)
    assert (up["ComparisonOperator"], up["Threshold"], up["EvaluationPeriods"]) == (
        "GreaterThanThreshold", 10.0, 3,
    )  # fmt: skip
    assert (down["ComparisonOperator"], down["Threshold"], down["EvaluationPeriods"]) == (
        "LessThanThreshold", 9.0, 15,
    )  # fmt: skip
    assert up["AlarmActions"] == ["arn:p"] and up["Period"] == 60


def test_capacity_math() -> None:
    assert tracking.scale_out_capacity(2, 30, 10) == 6
    assert tracking.scale_out_capacity(3, 10.5, 10) == 4
    assert tracking.scale_out_capacity(0, 5, 10) == 1
    assert tracking.scale_in_capacity(4, 5, 10) == 3  # 4*5/3 = 6.7 stays under 10
    assert tracking.scale_in_capacity(2, 8, 10) == 2  # 2*8/1 = 16 would breach
    assert tracking.scale_in_capacity(1, 0.1, 10) == 1
