"""One scaling action: clamp to the target's range, set it through the control plane, and
record it as a scaling activity, whether it succeeds or fails.

Every change of capacity polyhost makes goes through `Scaler.scale` under one lock, so an
alarm's policy, a scheduled action and a RegisterScalableTarget never interleave their reads
and writes of one resource. The activity starts InProgress (StatusCode) and ends Successful once
the resource runs the new capacity, or Failed with the plane's reason; `settle` moves the ones
under way (the service's background task calls it).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from polyhost.autoscaling.capacity import Capacity
from polyhost.autoscaling.resources import NAMESPACE, Resource, parse_resource
from polyhost.autoscaling.store import AutoscalingStore, Doc
from polyhost.errors import ServiceError

log = logging.getLogger("polyhost.autoscaling")

# An activity not settled after this long (real seconds) is Failed: the resource never got there.
SETTLE_TIMEOUT_S = 900.0


def clamp(value: int, target: Doc) -> int:
    return max(int(target["MinCapacity"]), min(int(target["MaxCapacity"]), value))


def resource_of(target: Doc) -> Resource:
    return parse_resource(target["ResourceId"], target["ScalableDimension"])


class Scaler:
    def __init__(
        self,
        store: AutoscalingStore,
        capacity: Capacity,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.capacity = capacity
        self.clock = clock
        self.lock = threading.RLock()

    def scale(self, target: Doc, new: int, cause: str, *, current: int | None = None) -> Doc | None:
        """Set `target`'s capacity to `new` (clamped) and record the activity; None when
        nothing changes. The plane's refusal becomes a Failed activity, never an exception."""
        resource = resource_of(target)
        with self.lock:
            if current is None:
                current = self.capacity.read(resource).desired
            new = clamp(new, target)
            if new == current:
                return None
            now = self.clock()
            activity: Doc = {
                "ActivityId": str(uuid.uuid4()),
                "ServiceNamespace": NAMESPACE,
                "ResourceId": target["ResourceId"],
                "ScalableDimension": target["ScalableDimension"],
                "Description": f"Setting desired {resource.unit} to {new}.",
                "Cause": cause,
                "StartTime": now,
                "StatusCode": "InProgress",
                "StatusMessage": f"Setting desired {resource.unit} from {current} to {new}.",
                "_capacity": new,
                "_from": current,
            }
            try:
                self.capacity.set(resource, new)
            except ServiceError as error:
                activity.update(
                    StatusCode="Failed",
                    EndTime=self.clock(),
                    StatusMessage=(
                        f"Failed to set desired {resource.unit} to {new}. Reason: {error.message}"
                    ),
                )
            self.store.put_activity(activity)
            log.info(
                "autoscaling %s: %s -> %s (%s): %s",
                target["ResourceId"],
                current,
                new,
                cause,
                activity["StatusCode"],
            )
            return activity

    def settle(self) -> int:
        """End the activities whose change reached the resource (or failed); how many ended."""
        ended = 0
        for activity in self.store.in_progress():
            try:
                resource = parse_resource(activity["ResourceId"], activity["ScalableDimension"])
                outcome = self.capacity.settled(resource, int(activity["_capacity"]))
            except ServiceError as error:  # the resource is gone
                outcome = (False, error.message)
            if outcome is None and self.clock() - activity["StartTime"] > SETTLE_TIMEOUT_S:
                outcome = (False, f"the resource did not get there in {SETTLE_TIMEOUT_S:.0f} s")
            if outcome is None:
                continue
            ok, why = outcome
            unit = resource_of(activity).unit
            activity["EndTime"] = self.clock()
            if ok:
                activity["StatusCode"] = "Successful"
                activity["StatusMessage"] = (
                    f"Successfully set desired {unit} to {activity['_capacity']}. Change "
                    "successfully fulfilled by sagemaker."
                )
            else:
                activity["StatusCode"] = "Failed"
                activity["StatusMessage"] = (
                    f"Failed to set desired {unit} to {activity['_capacity']}. Reason: {why}"
                )
            self.store.put_activity(activity)
            ended += 1
        return ended


def shown_activity(activity: Doc) -> dict[str, Any]:
    """The activity as DescribeScalingActivities answers it (private members dropped)."""
    return {k: v for k, v in activity.items() if not k.startswith("_")}
