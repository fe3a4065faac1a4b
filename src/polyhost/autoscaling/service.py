"""Application Auto Scaling as a plain object: `call(operation, params)` for the wire adapter,
`on_alarm` for the alarm service's actions, `run()` for the background task that runs due
scheduled actions and ends the activities whose change reached the resource.

Operations live one concern per module (targets.py, policies.py, scheduled.py); this one checks
each request against botocore's model first (params.py) and wires the parts together.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from polyhost.autoscaling import policies, scheduled, targets
from polyhost.autoscaling.capacity import Capacity, PlaneCall
from polyhost.autoscaling.context import MAX_TIME_SCALE, MIN_TIME_SCALE, Context
from polyhost.autoscaling.errors import ValidationException
from polyhost.autoscaling.pages import page
from polyhost.autoscaling.params import OPERATIONS, checked
from polyhost.autoscaling.resources import check_namespace
from polyhost.autoscaling.scaler import Scaler, shown_activity
from polyhost.autoscaling.store import AutoscalingStore
from polyhost.autoscaling.support import SUPPORT
from polyhost.awsmodel.support import refusal_message, refusals
from polyhost.errors import UnknownOperationException
from polyhost.metrics.alarm_actions import AUTOSCALING_PREFIX, AlarmEvent
from polyhost.metrics.alarms import AlarmService

log = logging.getLogger("polyhost.autoscaling")

TICK_S = 1.0
Operation = Callable[[Context, Mapping[str, Any]], dict[str, Any]]


def _activities(ctx: Context, params: Mapping[str, Any]) -> dict[str, Any]:
    check_namespace(params["ServiceNamespace"])
    found = [
        shown_activity(a)
        for a in ctx.store.activities(params.get("ResourceId"))
        if params.get("ScalableDimension") in (None, a["ScalableDimension"])
    ]
    return page("DescribeScalingActivities", params, found, "ScalingActivities")


HANDLERS: dict[str, Operation] = {
    "RegisterScalableTarget": targets.register_scalable_target,
    "DeregisterScalableTarget": targets.deregister_scalable_target,
    "DescribeScalableTargets": targets.describe_scalable_targets,
    "PutScalingPolicy": policies.put_scaling_policy,
    "DeleteScalingPolicy": policies.delete_scaling_policy,
    "DescribeScalingPolicies": policies.describe_scaling_policies,
    "DescribeScalingActivities": _activities,
    "PutScheduledAction": scheduled.put_scheduled_action,
    "DeleteScheduledAction": scheduled.delete_scheduled_action,
    "DescribeScheduledActions": scheduled.describe_scheduled_actions,
    "TagResource": targets.tag_resource,
    "UntagResource": targets.untag_resource,
    "ListTagsForResource": targets.list_tags_for_resource,
}
assert set(HANDLERS) == set(OPERATIONS)


def check_time_scale(scale: float) -> None:
    """Refuse a time scale outside what alarms' periods and cooldowns can be divided by."""
    if not MIN_TIME_SCALE <= scale <= MAX_TIME_SCALE:
        raise ValueError(
            f"--autoscaling-time-scale must be from {MIN_TIME_SCALE:g} to {MAX_TIME_SCALE:g} "
            f"(one evaluated minute lasts 60/N seconds), not {scale:g}."
        )


class AutoscalingService:
    OPERATIONS = OPERATIONS

    def __init__(
        self,
        store: AutoscalingStore,
        plane: PlaneCall,
        alarms: AlarmService | None,
        *,
        region: str,
        account_id: str,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_time_scale(time_scale)
        capacity = Capacity(plane)
        self.ctx = Context(
            store=store,
            capacity=capacity,
            scaler=Scaler(store, capacity, clock),
            alarms=alarms,
            region=region,
            account_id=account_id,
            clock=clock,
            time_scale=time_scale,
        )
        self._ticking = threading.Lock()  # held by a tick; `close` takes it
        self._closed = False
        if alarms is not None:
            alarms.handlers.register(AUTOSCALING_PREFIX, self.on_alarm, repeat=True)

    def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        handler = HANDLERS.get(operation)
        if handler is None:
            raise UnknownOperationException(
                f"Application Auto Scaling has no operation {operation[:100]!r} here; polyhost "
                f"serves {', '.join(OPERATIONS)}."
            )
        found = refusals(SUPPORT[operation], params)
        if found:
            raise ValidationException(refusal_message(operation, found))
        return handler(self.ctx, checked(operation, params))

    def on_alarm(self, event: AlarmEvent) -> None:
        """The alarm service's handler for `arn:aws:autoscaling:` actions (a worker thread)."""
        policies.on_alarm(self.ctx, event)

    def tick(self) -> None:
        """Run due scheduled actions, then end settled activities."""
        with self._ticking:
            if not self._closed:
                self._tick()

    def close(self) -> None:
        """Wait for a tick under way; none runs after (the caller closes the store then)."""
        with self._ticking:
            self._closed = True

    def _tick(self) -> None:
        try:
            scheduled.run_due(self.ctx)
        except Exception:
            log.exception("running scheduled actions failed; the next tick tries again")
        try:
            self.ctx.scaler.settle()
        except Exception:
            log.exception("checking scaling activities failed; the next tick tries again")

    async def run(self) -> None:
        """`tick` every TICK_S until cancelled."""
        while True:
            await asyncio.to_thread(self.tick)
            await asyncio.sleep(TICK_S)


__all__ = ["AutoscalingService", "ValidationException", "check_time_scale"]
