"""Target tracking: the metric a policy tracks, the two alarms AWS creates for it, and the
capacity each alarm asks for.

The alarms are AWS's: `TargetTracking-<ResourceId>-AlarmHigh-<uuid>` (GreaterThanThreshold the
target, 3 of 3 one-minute periods) and `...-AlarmLow-<uuid>` (LessThanThreshold 90 % of it, 15
of 15), both with the policy as their action. On AlarmHigh the capacity becomes
ceil(current * metric / target), the least that brings the metric to the target; on AlarmLow it
drops by one copy or instance when that keeps the metric at or under the target, so scale-in is
gradual, as AWS's is. Target tracking never takes a resource to 0: at 0 there is no metric per
copy to track (the scale-from-zero recipe is a step policy; docs/autoscaling.md).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Any

from polyhost.errors import ValidationException

DEFAULT_COOLDOWN_S = 300
PERIOD_S = 60
HIGH_PERIODS = 3
LOW_PERIODS = 15
LOW_FACTOR = 0.9
NAMESPACE = "AWS/SageMaker"
HIGH_RESOLUTION_PERIOD_S = 10  # the ...HighResolution metrics' alarms judge 10-second periods
# Predefined type -> (metric, what it applies to, statistic, period of its alarms).
PREDEFINED = {
    "SageMakerVariantInvocationsPerInstance": (
        "InvocationsPerInstance", "variant", "Sum", PERIOD_S,
    ),
    "SageMakerInferenceComponentInvocationsPerCopy": (
        "InvocationsPerCopy", "component", "Sum", PERIOD_S,
    ),
    "SageMakerVariantConcurrentRequestsPerModelHighResolution": (
        "ConcurrentRequestsPerModel", "variant", "Average", HIGH_RESOLUTION_PERIOD_S,
    ),
    "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution": (
        "ConcurrentRequestsPerCopy", "component", "Average", HIGH_RESOLUTION_PERIOD_S,
    ),
}  # fmt: skip
NOT_RECORDED = {"SageMakerVariantProvisionedConcurrencyUtilization"}


def tracked_metric(config: Mapping[str, Any], endpoint: str, variant: str | None) -> dict[str, Any]:
    """The metric (PutMetricAlarm's MetricName, Namespace, Dimensions, Statistic, Unit) a
    TargetTrackingScalingPolicyConfiguration tracks; ValidationException saying what to give."""
    predefined = config.get("PredefinedMetricSpecification")
    custom = config.get("CustomizedMetricSpecification")
    if (predefined is None) == (custom is None):
        raise ValidationException(
            "Give exactly one of PredefinedMetricSpecification and "
            "CustomizedMetricSpecification in TargetTrackingScalingPolicyConfiguration."
        )
    if predefined is not None:
        kind = predefined["PredefinedMetricType"]
        if predefined.get("ResourceLabel"):
            raise ValidationException(
                "ResourceLabel applies to ALBRequestCountPerTarget only: leave it out."
            )
        if kind in NOT_RECORDED:
            raise ValidationException(
                f"PredefinedMetricType {kind} is not recorded by polyhost (a serverless "
                "variant's ProvisionedConcurrency is not scaled): use "
                "SageMakerVariantInvocationsPerInstance, "
                "SageMakerVariantConcurrentRequestsPerModelHighResolution, or a "
                "CustomizedMetricSpecification on a metric polyhost records."
            )
        if kind not in PREDEFINED:
            raise ValidationException(
                f"PredefinedMetricType {kind} is not a SageMaker metric: use "
                "SageMakerVariantInvocationsPerInstance or "
                "SageMakerVariantConcurrentRequestsPerModelHighResolution (variants), "
                "SageMakerInferenceComponentInvocationsPerCopy or "
                "SageMakerInferenceComponentConcurrentRequestsPerCopyHighResolution "
                "(inference components)."
            )
        name, applies, statistic, period = PREDEFINED[kind]
        if (applies == "variant") != (variant is not None):
            wanted = (
                "SageMakerVariantInvocationsPerInstance"
                if variant is not None
                else "SageMakerInferenceComponentInvocationsPerCopy"
            )
            raise ValidationException(
                f"PredefinedMetricType {kind} does not apply to this scalable target: use {wanted}."
            )
        if variant is not None:
            dims = [
                {"Name": "EndpointName", "Value": endpoint},
                {"Name": "VariantName", "Value": variant},
            ]
        else:
            dims = [{"Name": "InferenceComponentName", "Value": endpoint}]
        return {
            "MetricName": name,
            "Namespace": NAMESPACE,
            "Dimensions": dims,
            "Statistic": statistic,
            "Period": period,
        }
    assert custom is not None
    if custom.get("Metrics"):
        raise ValidationException(
            "CustomizedMetricSpecification.Metrics (metric math) is not evaluated by polyhost: "
            "give MetricName, Namespace, Dimensions and Statistic of one metric instead."
        )
    missing = [m for m in ("MetricName", "Namespace", "Statistic") if not custom.get(m)]
    if missing:
        raise ValidationException(
            f"CustomizedMetricSpecification needs {', '.join(missing)} (one metric)."
        )
    metric: dict[str, Any] = {
        "MetricName": custom["MetricName"],
        "Namespace": custom["Namespace"],
        "Dimensions": [
            {"Name": d["Name"], "Value": d["Value"]} for d in custom.get("Dimensions") or []
        ],
        "Statistic": custom["Statistic"],
    }
    if custom.get("Unit"):
        metric["Unit"] = custom["Unit"]
    return metric


def alarm_names(resource_id: str) -> tuple[str, str]:
    """AlarmHigh's and AlarmLow's names (a new uuid each, as AWS makes them)."""
    return (
        f"TargetTracking-{resource_id}-AlarmHigh-{uuid.uuid4()}",
        f"TargetTracking-{resource_id}-AlarmLow-{uuid.uuid4()}",
    )


def alarm_definition(
    name: str, metric: Mapping[str, Any], target: float, policy: str, high: bool
) -> dict[str, Any]:
    """PutMetricAlarm's request for one of the two alarms."""
    return {
        "AlarmName": name,
        "AlarmDescription": (f"DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {policy}."),
        **metric,
        "Period": metric.get("Period", PERIOD_S),
        "EvaluationPeriods": HIGH_PERIODS if high else LOW_PERIODS,
        "DatapointsToAlarm": HIGH_PERIODS if high else LOW_PERIODS,
        "Threshold": float(target) if high else float(target) * LOW_FACTOR,
        "ComparisonOperator": "GreaterThanThreshold" if high else "LessThanThreshold",
        "AlarmActions": [policy],
        "ActionsEnabled": True,
    }


def scale_out_capacity(current: int, metric: float, target: float) -> int:
    """The least capacity that brings `metric` (per unit at `current`) to `target`."""
    if current <= 0:
        return 1
    return max(current, math.ceil(current * metric / target - 1e-9))


def scale_in_capacity(current: int, metric: float, target: float) -> int:
    """One less, when the metric stays at or under the target with one less; else `current`."""
    if current <= 1:
        return current
    return current - 1 if current * metric / (current - 1) <= target else current
