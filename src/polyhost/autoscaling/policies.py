"""PutScalingPolicy, DeleteScalingPolicy, DescribeScalingPolicies, and what a policy does when
one of its alarms fires.

A target tracking policy owns its two alarms (tracking.py): PutScalingPolicy creates them in
the CloudWatch alarm service in-process, DeleteScalingPolicy deletes them. A step policy is
fired by an alarm the user creates with the policy's ARN in its AlarmActions; its Alarms are
the alarms naming it. Either way the alarm service calls `on_alarm` in a worker thread, on the
state change and again once per alarm period while the alarm stays in ALARM, and cooldowns
decide whether a call changes anything (AWS's rules: during a scale-out cooldown a further
scale-out counts the capacity the first one added, so it only adds more when the metric asks
for more; scale-in waits for both cooldowns).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any

from polyhost.autoscaling import step as steps
from polyhost.autoscaling import tracking
from polyhost.autoscaling.context import Context
from polyhost.autoscaling.errors import (
    LimitExceededException,
    ObjectNotFoundException,
    ValidationException,
)
from polyhost.autoscaling.pages import page
from polyhost.autoscaling.resources import NAMESPACE, check_namespace, parse_resource, policy_arn
from polyhost.autoscaling.scaler import resource_of
from polyhost.autoscaling.store import Doc
from polyhost.errors import ServiceError
from polyhost.metrics.alarm_actions import AlarmEvent
from polyhost.metrics.alarms import alarm_arn

log = logging.getLogger("polyhost.autoscaling")

MAX_POLICIES_PER_TARGET = 50
STEP = "StepScaling"
TRACKING = "TargetTrackingScaling"
CONFIGS = {
    STEP: "StepScalingPolicyConfiguration",
    TRACKING: "TargetTrackingScalingPolicyConfiguration",
}


def put_scaling_policy(ctx: Context, params: Mapping[str, Any]) -> dict[str, Any]:
    check_namespace(params["ServiceNamespace"])
    resource = parse_resource(params["ResourceId"], params["ScalableDimension"])
    name = params["PolicyName"]
    kind = params.get("PolicyType") or STEP
    if kind not in CONFIGS or params.get("PredictiveScalingPolicyConfiguration"):
        raise ValidationException(
            "PredictiveScaling is not served by polyhost: use PolicyType StepScaling or "
            "TargetTrackingScaling."
        )
    other = CONFIGS[TRACKING if kind == STEP else STEP]
    if params.get(other) is not None:
        raise ValidationException(f"{other} does not go with PolicyType {kind}: leave it out.")
    config = params.get(CONFIGS[kind])
    if config is None:
        raise ValidationException(f"PolicyType {kind} needs {CONFIGS[kind]}.")
    if kind == STEP:
        steps.check_steps(config)
    else:
        _check_tracking(config)
    with ctx.scaler.lock:
        target = ctx.target(params["ResourceId"], params["ScalableDimension"])
        existing = ctx.store.policy_named(target["ResourceId"], name)
        if existing is None and len(ctx.store.policies(target["ResourceId"])) >= (
            MAX_POLICIES_PER_TARGET
        ):
            raise LimitExceededException(
                f"A scalable target has at most {MAX_POLICIES_PER_TARGET} scaling policies: "
                "delete one (DeleteScalingPolicy) first."
            )
        arn = (
            existing["PolicyARN"]
            if existing is not None
            else policy_arn(ctx.region, ctx.account_id, target["ResourceId"], name)
        )
        alarms: list[dict[str, str]] = []
        if kind == TRACKING:
            alarms = _tracking_alarms(ctx, config, resource.name, resource.variant, arn)
        if existing is not None:
            _delete_alarms(ctx, existing)
        doc: Doc = {
            "PolicyARN": arn,
            "PolicyName": name,
            "ServiceNamespace": NAMESPACE,
            "ResourceId": target["ResourceId"],
            "ScalableDimension": target["ScalableDimension"],
            "PolicyType": kind,
            CONFIGS[kind]: dict(config),
            "Alarms": alarms,
            "CreationTime": existing["CreationTime"] if existing else ctx.clock(),
        }
        ctx.store.put_policy(doc)
    answer: dict[str, Any] = {"PolicyARN": arn}
    if kind == TRACKING:
        answer["Alarms"] = alarms
    return answer


def _check_tracking(config: Mapping[str, Any]) -> None:
    if float(config["TargetValue"]) <= 0:
        raise ValidationException(
            f"TargetValue must be greater than 0, not {config['TargetValue']}."
        )
    for member in ("ScaleOutCooldown", "ScaleInCooldown"):
        if config.get(member) is not None and int(config[member]) < 0:
            raise ValidationException(f"{member} must be 0 or more seconds.")


def _tracking_alarms(
    ctx: Context, config: Mapping[str, Any], name: str, variant: str | None, arn: str
) -> list[dict[str, str]]:
    """Create AlarmHigh and (unless DisableScaleIn) AlarmLow; their names and ARNs."""
    if ctx.alarms is None:
        raise ValidationException(
            "Target tracking needs CloudWatch alarms, which need the metric history: start "
            "the server without --no-metrics-history, or use a step scaling policy."
        )
    metric = tracking.tracked_metric(config, name, variant)
    resource_id = arn.split(":resource/sagemaker/", 1)[1].rsplit(":policyName/", 1)[0]
    high, low = tracking.alarm_names(resource_id)
    wanted = [(high, True)]
    if not config.get("DisableScaleIn"):
        wanted.append((low, False))
    made: list[dict[str, str]] = []
    try:
        for alarm, is_high in wanted:
            definition = tracking.alarm_definition(
                alarm, metric, float(config["TargetValue"]), arn, is_high
            )
            ctx.alarms.put_metric_alarm(definition)
            made.append(
                {"AlarmName": alarm, "AlarmARN": alarm_arn(ctx.region, ctx.account_id, alarm)}
            )
    except ServiceError as error:
        _delete_alarms(ctx, {"Alarms": made})
        raise ValidationException(
            f"The policy's alarm could not be created: {error.message}"
        ) from None
    return made


def _delete_alarms(ctx: Context, policy: Mapping[str, Any]) -> None:
    """The alarms a target tracking policy made (one that is gone already is passed over)."""
    if ctx.alarms is None or policy.get("PolicyType", TRACKING) != TRACKING:
        return
    for alarm in policy.get("Alarms") or []:
        with contextlib.suppress(ServiceError):
            ctx.alarms.delete_alarms({"AlarmNames": [alarm["AlarmName"]]})


def delete_policies_of(ctx: Context, resource_id: str) -> None:
    for policy in ctx.store.policies(resource_id):
        _delete_alarms(ctx, policy)


def delete_scaling_policy(ctx: Context, params: Mapping[str, Any]) -> dict[str, Any]:
    check_namespace(params["ServiceNamespace"])
    parse_resource(params["ResourceId"], params["ScalableDimension"])
    with ctx.scaler.lock:
        policy = ctx.store.policy_named(params["ResourceId"], params["PolicyName"])
        if policy is None or policy["ScalableDimension"] != params["ScalableDimension"]:
            raise ObjectNotFoundException(
                f"No scaling policy found for service namespace: sagemaker, resource ID: "
                f"{params['ResourceId'][:200]}, scalable dimension: "
                f"{params['ScalableDimension']}, policy name: {params['PolicyName'][:256]}."
            )
        _delete_alarms(ctx, policy)
        ctx.store.delete_policy(policy["PolicyARN"])
    return {}


def describe_scaling_policies(ctx: Context, params: Mapping[str, Any]) -> dict[str, Any]:
    check_namespace(params["ServiceNamespace"])
    names = set(params.get("PolicyNames") or [])
    found = [
        p
        for p in ctx.store.policies(params.get("ResourceId"))
        if (not names or p["PolicyName"] in names)
        and params.get("ScalableDimension") in (None, p["ScalableDimension"])
    ]
    answer = page("DescribeScalingPolicies", params, found, "ScalingPolicies")
    answer["ScalingPolicies"] = [_shown(ctx, p) for p in answer["ScalingPolicies"]]
    return answer


def _shown(ctx: Context, policy: Doc) -> Doc:
    if policy["PolicyType"] == STEP and ctx.alarms is not None:
        # A step policy's alarms are the ones that name it as an action.
        listed = ctx.alarms.describe_alarms({"ActionPrefix": policy["PolicyARN"]})
        policy = {
            **policy,
            "Alarms": [
                {"AlarmName": a["AlarmName"], "AlarmARN": a["AlarmArn"]}
                for a in listed.get("MetricAlarms", [])
            ],
        }
    return {k: v for k, v in policy.items() if not k.startswith("_")}


# -- acting ------------------------------------------------------------------------------------
def _datapoints(alarm: Mapping[str, Any]) -> list[float]:
    """The datapoints the alarm judged, from its StateReasonData (none when it has none)."""
    data = alarm.get("StateReasonData")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return []
    if not isinstance(data, dict):
        return []
    points = data.get("recentDatapoints") or []
    return [float(p) for p in points if isinstance(p, int | float) and not isinstance(p, bool)]


def on_alarm(ctx: Context, event: AlarmEvent) -> None:
    """Run the policy `event.action_arn` names; raises (a failed alarm action) when the policy
    or its target no longer exists."""
    policy = ctx.store.policy(event.action_arn)
    if policy is None:
        raise RuntimeError(f"no scaling policy {event.action_arn} exists (it was deleted)")
    with ctx.scaler.lock:
        target = ctx.store.target(policy["ResourceId"])
        if target is None:
            raise RuntimeError(f"the scalable target {policy['ResourceId']} was deregistered")
        reading = ctx.capacity.read(resource_of(target))
        current = reading.desired
        now = ctx.clock()
        points = _datapoints(event.alarm)
        cause = (
            f"monitor alarm {event.alarm_name} in state {event.new_state} triggered policy "
            f"{policy['PolicyName']}"
        )
        if policy["PolicyType"] == TRACKING:
            wanted, out_cooldown, in_cooldown = _tracked(
                ctx, policy, event, current, points, target, now
            )
        else:
            wanted, out_cooldown, in_cooldown = _stepped(
                ctx, policy, event, current, points, target, now
            )
        if wanted is None:
            return
        suspended = target.get("SuspendedState") or {}
        if wanted > current and suspended.get("DynamicScalingOutSuspended"):
            return
        if wanted < current and suspended.get("DynamicScalingInSuspended"):
            return
        activity = ctx.scaler.scale(target, wanted, cause, current=current)
        if activity is None or activity["StatusCode"] == "Failed":
            return
        if activity["_capacity"] > current:
            if now >= target.get("_out_until", 0.0):
                target["_out_from"] = current
            target["_out_until"] = now + ctx.real_seconds(out_cooldown)
        else:
            target["_in_until"] = now + ctx.real_seconds(in_cooldown)
        ctx.store.put_target(target)


def _tracked(
    ctx: Context,
    policy: Doc,
    event: AlarmEvent,
    current: int,
    points: list[float],
    target: Doc,
    now: float,
) -> tuple[int | None, float, float]:
    config = policy[CONFIGS[TRACKING]]
    value = float(config["TargetValue"])
    out_cooldown = float(config.get("ScaleOutCooldown", tracking.DEFAULT_COOLDOWN_S))
    in_cooldown = float(config.get("ScaleInCooldown", tracking.DEFAULT_COOLDOWN_S))
    metric = sum(points) / len(points) if points else None
    high = "-AlarmHigh-" in event.alarm_name
    if event.new_state != "ALARM":
        return None, out_cooldown, in_cooldown
    if high:
        base = current
        if now < target.get("_out_until", 0.0):
            base = int(target.get("_out_from", current))
        wanted = current + 1 if metric is None else tracking.scale_out_capacity(base, metric, value)
        return (wanted if wanted > current else None), out_cooldown, in_cooldown
    if config.get("DisableScaleIn"):
        return None, out_cooldown, in_cooldown
    if now < target.get("_out_until", 0.0) or now < target.get("_in_until", 0.0):
        return None, out_cooldown, in_cooldown
    if metric is None:
        wanted = current - 1 if current > 1 else current
    else:
        wanted = tracking.scale_in_capacity(current, metric, value)
    return (wanted if wanted < current else None), out_cooldown, in_cooldown


def _stepped(
    ctx: Context,
    policy: Doc,
    event: AlarmEvent,
    current: int,
    points: list[float],
    target: Doc,
    now: float,
) -> tuple[int | None, float, float]:
    config = policy[CONFIGS[STEP]]
    cooldown = float(config.get("Cooldown", steps.DEFAULT_COOLDOWN_S))
    threshold = float(event.alarm.get("Threshold", 0.0))
    metric = steps.aggregate(points, config.get("MetricAggregationType")) if points else threshold
    chosen = steps.find_step(config["StepAdjustments"], metric - threshold)
    if chosen is None:
        return None, cooldown, cooldown
    adjustment = int(chosen["ScalingAdjustment"])
    wanted = steps.stepped_capacity(config, current, adjustment)
    if wanted > current and now < target.get("_out_until", 0.0):
        # The capacity the last scale-out added counts toward this one.
        base = int(target.get("_out_from", current))
        wanted = steps.stepped_capacity(config, base, adjustment)
        if wanted <= current:
            return None, cooldown, cooldown
    if wanted < current and now < target.get("_in_until", 0.0):
        return None, cooldown, cooldown
    return (None if wanted == current else wanted), cooldown, cooldown
