"""What the operations share: the store, the scaler, the alarm service, the account, the clock
and the time scale. One object handed to each operation module, so each stays one concern."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from polyhost.autoscaling.capacity import Capacity
from polyhost.autoscaling.errors import ObjectNotFoundException
from polyhost.autoscaling.scaler import Scaler
from polyhost.autoscaling.store import AutoscalingStore, Doc
from polyhost.metrics.alarms import AlarmService

MIN_TIME_SCALE = 1.0
MAX_TIME_SCALE = 6.0


@dataclass(frozen=True)
class Context:
    store: AutoscalingStore
    capacity: Capacity
    scaler: Scaler
    alarms: AlarmService | None
    region: str
    account_id: str
    clock: Callable[[], float]
    time_scale: float = 1.0  # one evaluated minute lasts 60 / time_scale real seconds

    def real_seconds(self, seconds: float) -> float:
        """A cooldown or a rate's length as the server waits it."""
        return seconds / self.time_scale

    def target(self, resource_id: str, dimension: str) -> Doc:
        found = self.store.target(resource_id)
        if found is None or found["ScalableDimension"] != dimension:
            raise ObjectNotFoundException(
                "No scalable target registered for service namespace: sagemaker, resource ID: "
                f"{resource_id[:200]}, scalable dimension: {dimension}: register it with "
                "RegisterScalableTarget first."
            )
        return found
