"""`GET /api/scaling`: every scalable target with what the dashboard shows beside it.

For each target (at most `MAX_TARGETS`, by ResourceId): its range, suspended state and
policies, its resource's desired and current capacity as the control plane describes it now,
its last `MAX_ACTIVITIES` scaling activities newest first, and two recorded series over the
range — the capacity running (InstanceCount of the variant, CopyCount of the component, polyhost's
own gauges, `metrics/recorder.py`) and the invocations (the component's Invocations; the
variant's requests, the SampleCount of its InvocationsPerInstance). The series come from the
metric history, not from the activities, so a change made by hand shows as well, and what is
charted is what ran.

Both services are reached through their `call(operation, params)`, the entry their wire adapters
use, so this module knows nothing of their types; everything here runs in a worker thread
(both read SQLite).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polyhost.errors import ServiceError
from polyhost.metrics import catalog
from polyhost.metrics.catalog import MetricDef
from polyhost.metrics.charts import RANGES
from polyhost.metrics.query import Datapoint, MetricId, MetricsReader, dimensions

ServiceCall = Callable[[str, dict[str, Any]], dict[str, Any]]
NAMESPACE = "sagemaker"
MAX_TARGETS = 50
MAX_ACTIVITIES = 20
_ACTIVITY_FIELDS = ("ActivityId", "StartTime", "EndTime", "StatusCode", "StatusMessage")


def scaling(
    scale: ServiceCall,
    control: ServiceCall,
    reader: MetricsReader | None,
    range_name: str,
    now: float,
) -> dict[str, Any]:
    """The answer of /api/scaling over `range_name` (a key of `charts.RANGES`) ending `now`."""
    targets, more = _targets(scale)
    policies = _pages(scale, "DescribeScalingPolicies", "ScalingPolicies", {})
    span, period = RANGES[range_name]
    out = []
    for target in targets:
        resource = str(target["ResourceId"])
        out.append(
            {
                **_target(target),
                "policies": [
                    _policy(p)
                    for p in policies
                    if p["ResourceId"] == resource
                    and p["ScalableDimension"] == target["ScalableDimension"]
                ],
                "capacity_now": _capacity_now(control, resource),
                "activities": _activities(scale, target),
                "series": _series(reader, resource, now - span, now, period),
            }
        )
    return {"range": range_name, "period": period, "targets": out, "truncated": more}


def _pages(
    scale: ServiceCall, operation: str, key: str, params: dict[str, Any], limit: int = 10_000
) -> list[dict[str, Any]]:
    """Every item of a paged Describe*, at most `limit`."""
    items: list[dict[str, Any]] = []
    token: str | None = None
    while len(items) < limit:
        ask: dict[str, Any] = {"ServiceNamespace": NAMESPACE, "MaxResults": 50, **params}
        if token:
            ask["NextToken"] = token
        page = scale(operation, ask)
        items += page.get(key, [])
        token = page.get("NextToken")
        if not token:
            break
    return items


def _targets(scale: ServiceCall) -> tuple[list[dict[str, Any]], bool]:
    """The first MAX_TARGETS targets by ResourceId, and whether there are more."""
    found = _pages(scale, "DescribeScalableTargets", "ScalableTargets", {})
    found.sort(key=lambda t: str(t["ResourceId"]))
    return found[:MAX_TARGETS], len(found) > MAX_TARGETS


def _target(target: dict[str, Any]) -> dict[str, Any]:
    resource = str(target["ResourceId"])
    parts = resource.split("/")
    component = parts[1] if parts[0] == "inference-component" and len(parts) == 2 else None
    return {
        "resource_id": resource,
        "dimension": target["ScalableDimension"],
        "kind": "component" if component is not None else "variant",
        "component": component,
        "endpoint": parts[1] if component is None and len(parts) == 4 else None,
        "variant": parts[3] if component is None and len(parts) == 4 else None,
        "min": target.get("MinCapacity"),
        "max": target.get("MaxCapacity"),
        "suspended": target.get("SuspendedState") or {},
        "created": target.get("CreationTime"),
    }


def _policy(policy: dict[str, Any]) -> dict[str, Any]:
    tracking = policy.get("TargetTrackingScalingPolicyConfiguration") or {}
    predefined = tracking.get("PredefinedMetricSpecification") or {}
    custom = tracking.get("CustomizedMetricSpecification") or {}
    step = policy.get("StepScalingPolicyConfiguration") or {}
    return {
        "name": policy.get("PolicyName"),
        "type": policy.get("PolicyType"),
        "target_value": tracking.get("TargetValue"),
        "metric": predefined.get("PredefinedMetricType") or custom.get("MetricName"),
        "adjustment_type": step.get("AdjustmentType"),
        "alarms": [a.get("AlarmName") for a in policy.get("Alarms") or []],
    }


def _activities(scale: ServiceCall, target: dict[str, Any]) -> list[dict[str, Any]]:
    """The target's last MAX_ACTIVITIES activities, newest first (as the service answers)."""
    page = scale(
        "DescribeScalingActivities",
        {
            "ServiceNamespace": NAMESPACE,
            "ResourceId": target["ResourceId"],
            "ScalableDimension": target["ScalableDimension"],
            "MaxResults": MAX_ACTIVITIES,
        },
    )
    return [
        {
            "id": a.get("ActivityId"),
            "start": a.get("StartTime"),
            "end": a.get("EndTime"),
            "status": a.get("StatusCode"),
            "status_message": a.get("StatusMessage"),
            "description": a.get("Description"),
            "cause": a.get("Cause"),
        }
        for a in page.get("ScalingActivities", [])[:MAX_ACTIVITIES]
    ]


def _capacity_now(control: ServiceCall, resource: str) -> dict[str, Any] | None:
    """Desired and current capacity as the control plane describes the resource; None when it
    is gone (a target may outlive a deleted resource)."""
    parts = resource.split("/")
    try:
        if parts[0] == "inference-component" and len(parts) == 2:
            runtime = control("DescribeInferenceComponent", {"InferenceComponentName": parts[1]})
            config = runtime.get("RuntimeConfig") or {}
            return {
                "desired": config.get("DesiredCopyCount"),
                "current": config.get("CurrentCopyCount"),
            }
        if parts[0] == "endpoint" and len(parts) == 4:
            described = control("DescribeEndpoint", {"EndpointName": parts[1]})
            for variant in described.get("ProductionVariants") or []:
                if variant.get("VariantName") == parts[3]:
                    return {
                        "desired": variant.get("DesiredInstanceCount"),
                        "current": variant.get("CurrentInstanceCount"),
                    }
    except ServiceError:
        return None
    return None


def _series(
    reader: MetricsReader | None, resource: str, start: float, end: float, period: int
) -> dict[str, Any]:
    """The recorded capacity and invocations of the target's resource over [start, end)."""
    if reader is None:
        return {"history": False, "capacity": [], "invocations": []}
    parts = resource.split("/")
    if parts[0] == "inference-component" and len(parts) == 2:
        dims = dimensions(InferenceComponentName=parts[1])
        capacity: MetricDef = catalog.COPY_COUNT
        calls, count_of = catalog.INVOCATIONS, _sum
    elif parts[0] == "endpoint" and len(parts) == 4:
        dims = dimensions(EndpointName=parts[1], VariantName=parts[3])
        capacity = catalog.INSTANCE_COUNT
        calls, count_of = catalog.INVOCATIONS_PER_INSTANCE, _sample_count
    else:
        return {"history": True, "capacity": [], "invocations": []}

    def read(definition: MetricDef) -> list[Datapoint]:
        metric = MetricId(definition.namespace, definition.name, dims)
        return list(reader.statistics(metric, start, end, period))

    return {
        "history": True,
        "capacity_metric": capacity.name,
        "capacity": [[p.timestamp, p.maximum] for p in read(capacity)],
        "invocations": [[p.timestamp, count_of(p)] for p in read(calls)],
    }


def _sum(point: Datapoint) -> float:
    return point.sum


def _sample_count(point: Datapoint) -> float:
    """A variant's requests: InvocationsPerInstance has one value per request."""
    return point.sample_count
