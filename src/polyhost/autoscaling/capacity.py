"""Reading and setting a resource's capacity, only through the control plane's operations.

So the plane's validation, locking and deploy path apply to a scaling action exactly as to a
user's call: a variant's capacity is DescribeEndpoint's DesiredInstanceCount, set with
UpdateEndpointWeightsAndCapacities; a component's is DescribeInferenceComponent's
DesiredCopyCount, set with UpdateInferenceComponentRuntimeConfig (which resizes in place).
`settled` says whether a change has reached the resource, which ends its activity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from polyhost.autoscaling.errors import ValidationException
from polyhost.autoscaling.resources import Resource

PlaneCall = Callable[[str, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Reading:
    desired: int
    current: int
    status: str  # the endpoint's or the component's status
    failure: str | None = None


class Capacity:
    def __init__(self, call: PlaneCall) -> None:
        self._call = call

    def read(self, resource: Resource) -> Reading:
        """The resource's capacity now; ValidationException (the plane's, or naming the
        variant) when it does not exist."""
        if resource.is_component:
            found = self._call(
                "DescribeInferenceComponent", {"InferenceComponentName": resource.name}
            )
            runtime = found.get("RuntimeConfig") or {}
            return Reading(
                int(runtime.get("DesiredCopyCount", 0)),
                int(runtime.get("CurrentCopyCount", 0)),
                str(found.get("InferenceComponentStatus", "")),
                found.get("FailureReason"),
            )
        endpoint = self._call("DescribeEndpoint", {"EndpointName": resource.name})
        for variant in endpoint.get("ProductionVariants") or []:
            if variant.get("VariantName") == resource.variant:
                current = int(variant.get("CurrentInstanceCount", 0) or 0)
                desired = int(variant.get("DesiredInstanceCount", current) or 0)
                return Reading(
                    desired,
                    current,
                    str(endpoint.get("EndpointStatus", "")),
                    endpoint.get("FailureReason"),
                )
        raise ValidationException(
            f"The endpoint {resource.name} has no production variant {resource.variant}: "
            "check the ResourceId's variant name with DescribeEndpoint."
        )

    def set(self, resource: Resource, count: int) -> None:
        """Ask the plane for `count`; raises the plane's ServiceError when it refuses."""
        if resource.is_component:
            self._call(
                "UpdateInferenceComponentRuntimeConfig",
                {
                    "InferenceComponentName": resource.name,
                    "DesiredRuntimeConfig": {"CopyCount": count},
                },
            )
            return
        self._call(
            "UpdateEndpointWeightsAndCapacities",
            {
                "EndpointName": resource.name,
                "DesiredWeightsAndCapacities": [
                    {"VariantName": resource.variant, "DesiredInstanceCount": count}
                ],
            },
        )

    def settled(self, resource: Resource, count: int) -> tuple[bool, str | None] | None:
        """None while the change is under way; (True, None) once the resource runs `count`;
        (False, why) when it failed."""
        reading = self.read(resource)
        if reading.status == "Failed":
            return False, reading.failure or f"the resource's status is {reading.status}"
        if reading.status == "InService" and reading.current == count:
            return True, None
        if reading.status == "InService" and reading.desired != count:
            return False, (
                f"the desired {resource.unit} is {reading.desired} now: another change "
                "replaced this one"
            )
        return None
