"""PutScheduledAction, DeleteScheduledAction, DescribeScheduledActions, and running the ones
that are due.

At its time a scheduled action sets the target's MinCapacity and MaxCapacity (ScalableTarget
Action) and clamps the capacity into them, recorded as a scaling activity. Each action keeps
its next run (`_next`, epoch seconds) in the store, so a restart neither loses nor repeats one:
a run missed while the server was down happens at the next start, once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from polyhost.autoscaling import schedule
from polyhost.autoscaling.context import Context
from polyhost.autoscaling.errors import (
    LimitExceededException,
    ObjectNotFoundException,
    ValidationException,
)
from polyhost.autoscaling.pages import page
from polyhost.autoscaling.resources import (
    NAMESPACE,
    check_namespace,
    parse_resource,
    scheduled_action_arn,
)
from polyhost.autoscaling.store import Doc

MAX_PER_TARGET = 200


def _next(ctx: Context, doc: Doc, after: float) -> float | None:
    parsed = schedule.parse(doc["Schedule"], ctx.time_scale)
    return schedule.next_run(
        parsed,
        after,
        schedule.zone(doc.get("Timezone")),
        doc.get("StartTime"),
        doc.get("EndTime"),
        anchor=doc["CreationTime"],
    )


def put_scheduled_action(ctx: Context, params: Mapping[str, Any]) -> dict[str, Any]:
    check_namespace(params["ServiceNamespace"])
    parse_resource(params["ResourceId"], params["ScalableDimension"])
    name = params["ScheduledActionName"]
    with ctx.scaler.lock:
        target = ctx.target(params["ResourceId"], params["ScalableDimension"])
        existing = ctx.store.scheduled_named(target["ResourceId"], name)
        if existing is None and len(ctx.store.scheduled(target["ResourceId"])) >= MAX_PER_TARGET:
            raise LimitExceededException(
                f"A scalable target has at most {MAX_PER_TARGET} scheduled actions: delete one "
                "(DeleteScheduledAction) first."
            )
        now = ctx.clock()
        doc: Doc = dict(existing or {})
        doc.update(
            {
                "ScheduledActionName": name,
                "ScheduledActionARN": doc.get("ScheduledActionARN")
                or scheduled_action_arn(ctx.region, ctx.account_id, target["ResourceId"], name),
                "ServiceNamespace": NAMESPACE,
                "ResourceId": target["ResourceId"],
                "ScalableDimension": target["ScalableDimension"],
                "CreationTime": doc.get("CreationTime", now),
            }
        )
        for member in ("Schedule", "Timezone", "StartTime", "EndTime", "ScalableTargetAction"):
            if params.get(member) is not None:
                doc[member] = params[member]
        if not doc.get("Schedule"):
            raise ValidationException(
                "Schedule is required for a new scheduled action: at(...), rate(...) or cron(...)."
            )
        action = doc.get("ScalableTargetAction") or {}
        low, high = action.get("MinCapacity"), action.get("MaxCapacity")
        if low is None and high is None:
            raise ValidationException(
                "ScalableTargetAction needs MinCapacity, MaxCapacity or both: what the target's "
                "range becomes at the scheduled time."
            )
        if low is not None and high is not None and int(low) > int(high):
            raise ValidationException(
                f"ScalableTargetAction's MinCapacity ({low}) must not exceed its MaxCapacity "
                f"({high})."
            )
        _check_floor(target, low)
        if doc.get("StartTime") and doc.get("EndTime") and doc["StartTime"] > doc["EndTime"]:
            raise ValidationException("StartTime must not be after EndTime.")
        doc["_next"] = _next(ctx, doc, now)  # refuses a bad Schedule or Timezone
        ctx.store.put_scheduled(doc)
    return {"ScheduledActionARN": doc["ScheduledActionARN"]}


def _check_floor(target: Doc, low: int | None) -> None:
    if (
        low is not None
        and int(low) < 1
        and target["ScalableDimension"].startswith("sagemaker:variant:")
    ):
        raise ValidationException(
            "MinCapacity of an endpoint variant must be at least 1 (only inference components "
            "scale to 0)."
        )


def delete_scheduled_action(ctx: Context, params: Mapping[str, Any]) -> dict[str, Any]:
    check_namespace(params["ServiceNamespace"])
    parse_resource(params["ResourceId"], params["ScalableDimension"])
    with ctx.scaler.lock:
        found = ctx.store.scheduled_named(params["ResourceId"], params["ScheduledActionName"])
        if found is None or found["ScalableDimension"] != params["ScalableDimension"]:
            raise ObjectNotFoundException(
                "No scheduled action found for service namespace: sagemaker, resource ID: "
                f"{params['ResourceId'][:200]}, scalable dimension: "
                f"{params['ScalableDimension']}, scheduled action name: "
                f"{params['ScheduledActionName'][:256]}."
            )
        ctx.store.delete_scheduled(params["ResourceId"], params["ScheduledActionName"])
    return {}


def describe_scheduled_actions(ctx: Context, params: Mapping[str, Any]) -> dict[str, Any]:
    check_namespace(params["ServiceNamespace"])
    names = set(params.get("ScheduledActionNames") or [])
    found = [
        {k: v for k, v in a.items() if not k.startswith("_")}
        for a in ctx.store.scheduled(params.get("ResourceId"))
        if (not names or a["ScheduledActionName"] in names)
        and params.get("ScalableDimension") in (None, a["ScalableDimension"])
    ]
    return page("DescribeScheduledActions", params, found, "ScheduledActions")


def run_due(ctx: Context) -> int:
    """Run every scheduled action whose time has come; how many ran."""
    ran = 0
    now = ctx.clock()
    for action in ctx.store.scheduled():
        due = action.get("_next")
        if due is None or due > now:
            continue
        with ctx.scaler.lock:
            target = ctx.store.target(action["ResourceId"])
            if target is not None and not (target.get("SuspendedState") or {}).get(
                "ScheduledScalingSuspended"
            ):
                _apply(ctx, action, target)
                ran += 1
            action["_next"] = _next(ctx, action, max(now, due))
            ctx.store.put_scheduled(action)
    return ran


def _apply(ctx: Context, action: Doc, target: Doc) -> None:
    wanted = action.get("ScalableTargetAction") or {}
    low = int(wanted.get("MinCapacity", target["MinCapacity"]) or 0)
    high = int(wanted.get("MaxCapacity", target["MaxCapacity"]) or 0)
    if "MinCapacity" not in wanted and low > high:
        low = high
    if "MaxCapacity" not in wanted and high < low:
        high = low
    target["MinCapacity"], target["MaxCapacity"] = low, high
    ctx.store.put_target(target)
    cause = f"scheduled action name {action['ScheduledActionName']} was triggered"
    activity = ctx.scaler.scale(target, ctx.capacity.read(_resource(target)).desired, cause)
    if activity is None:
        now = ctx.clock()
        ctx.store.put_activity(
            {
                "ActivityId": str(uuid.uuid4()),
                "ServiceNamespace": NAMESPACE,
                "ResourceId": target["ResourceId"],
                "ScalableDimension": target["ScalableDimension"],
                "Description": f"Setting min capacity to {low} and max capacity to {high}.",
                "Cause": cause,
                "StartTime": now,
                "EndTime": now,
                "StatusCode": "Successful",
                "StatusMessage": f"Successfully set min capacity to {low} and max capacity to "
                f"{high}.",
            }
        )


def _resource(target: Doc) -> Any:
    return parse_resource(target["ResourceId"], target["ScalableDimension"])
