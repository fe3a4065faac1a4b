"""An endpoint's lifecycle: what the control plane records, and how deployer reports move it.

The endpoint keeps the spec it runs (`spec`) and, during an update, the spec it is moving to
(`pending`). The deployer reports per revision; a report for a revision that is neither is stale
(an update superseded it, or the endpoint was deleted) and is ignored.

    Creating --InService--> InService --UpdateEndpoint--> Updating --InService--> InService (new)
        \\--Failed--> Failed                                 \\--failure--> InService (old config,
                                                                            FailureReason set)

A failed update falls back to InService only while the old revision still serves: after a
restart in the middle of an update only the new revision is started again, so its failure
leaves the endpoint Failed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from polyhost.control.seam import EndpointSpec, StatusReport, VariantStatus
from polyhost.control.specs import (
    spec_from_json,
    spec_to_json,
    variant_status_from_json,
    variant_status_to_json,
)

MAX_FAILURE_REASON = 1024
IN_PROGRESS = frozenset({"Creating", "Updating", "Deleting", "SystemUpdating", "RollingBack"})
# DescribeEndpoint's ProductionVariants[].VariantStatus[].Status takes only these.
VARIANT_STATUSES = frozenset({"Creating", "Updating", "Deleting", "ActivatingTraffic", "Baking"})


def _clip(reason: str | None) -> str | None:
    return None if reason is None else reason[:MAX_FAILURE_REASON]


@dataclass(frozen=True)
class EndpointState:
    """Everything about an endpoint besides the columns the store lists by."""

    config_name: str  # EndpointConfigName: the config serving (or being created)
    spec: EndpointSpec
    revision: int  # the highest revision ever handed to the deployer
    pending: EndpointSpec | None = None
    pending_since: float | None = None
    was_serving: bool = False  # the endpoint was InService when the pending update began
    failure_reason: str | None = None
    variants: tuple[VariantStatus, ...] | None = None  # from the last report, if any
    reported_at: float | None = None
    deployment_config: dict[str, Any] | None = None

    def to_doc(self) -> dict[str, Any]:
        return {
            "EndpointConfigName": self.config_name,
            "spec": spec_to_json(self.spec),
            "revision": self.revision,
            "pending": spec_to_json(self.pending) if self.pending else None,
            "pending_since": self.pending_since,
            "was_serving": self.was_serving,
            "FailureReason": self.failure_reason,
            "variants": (
                [variant_status_to_json(v) for v in self.variants]
                if self.variants is not None
                else None
            ),
            "reported_at": self.reported_at,
            "DeploymentConfig": self.deployment_config,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> EndpointState:
        variants = doc.get("variants")
        pending = doc.get("pending")
        return cls(
            config_name=doc["EndpointConfigName"],
            spec=spec_from_json(doc["spec"]),
            revision=int(doc["revision"]),
            pending=spec_from_json(pending) if pending else None,
            pending_since=doc.get("pending_since"),
            was_serving=bool(doc.get("was_serving")),
            failure_reason=doc.get("FailureReason"),
            variants=(
                tuple(variant_status_from_json(v) for v in variants)
                if variants is not None
                else None
            ),
            reported_at=doc.get("reported_at"),
            deployment_config=doc.get("DeploymentConfig"),
        )


def begin_update(
    state: EndpointState,
    spec: EndpointSpec,
    *,
    now: float,
    status: str,
    deployment_config: dict[str, Any] | None,
) -> EndpointState:
    """The state after UpdateEndpoint was accepted (the caller checked `status` allows it)."""
    return replace(
        state,
        pending=spec,
        pending_since=now,
        revision=spec.revision,
        was_serving=status == "InService",
        deployment_config=deployment_config or state.deployment_config,
    )


def desired_spec(status: str, state: EndpointState) -> EndpointSpec | None:
    """What should run for this endpoint after a server start (None: nothing)."""
    if state.pending is not None:
        return state.pending
    if status == "Failed":
        return None  # SageMaker does not retry a failed endpoint on its own
    return state.spec


def apply_report(
    status: str, state: EndpointState, report: StatusReport, *, now: float, cold: bool
) -> tuple[str, EndpointState] | None:
    """(new status, new state) after `report`, or None when the report is stale."""
    reason = _clip(report.failure_reason)
    variants = report.variants or None
    pending = state.pending
    if pending is not None and report.revision == pending.revision:
        cleared = replace(state, pending=None, pending_since=None, reported_at=now)
        succeeded = (
            report.status == "InService"
            and reason is None
            and report.serving_config_name in (None, pending.endpoint_config_name)
        )
        if succeeded:
            return "InService", replace(
                cleared,
                spec=pending,
                config_name=pending.endpoint_config_name,
                failure_reason=None,
                variants=variants,
            )
        still_serving = report.status == "InService" or (state.was_serving and not cold)
        if report.status in ("InService", "Failed") and still_serving:
            return "InService", replace(
                cleared,
                config_name=report.serving_config_name or state.config_name,
                failure_reason=reason or "The update failed; the previous configuration serves.",
                variants=variants or state.variants,
            )
        if report.status == "Failed":
            return "Failed", replace(
                cleared,
                spec=pending,
                config_name=pending.endpoint_config_name,
                failure_reason=reason or "The update failed and nothing serves the endpoint.",
                variants=variants,
            )
        return status, replace(state, reported_at=now)  # progress of the update
    if report.revision != state.spec.revision:
        return None
    if pending is not None:
        # The revision still serving changed while an update is under way.
        return status, replace(state, variants=variants or state.variants, reported_at=now)
    if reason is not None:
        failure = reason
    elif report.status == "Failed":
        failure = state.failure_reason or "The endpoint failed; see the server log."
    elif status == "Creating":
        failure = None
    else:
        failure = state.failure_reason  # a failed update's reason stays until the next success
    return report.status, replace(
        state, failure_reason=failure, variants=variants or state.variants, reported_at=now
    )


# -- DescribeEndpoint ---------------------------------------------------------------------------


def _planned_variants(spec: EndpointSpec, started: float) -> list[dict[str, Any]]:
    """Variant summaries before the deployer has said anything: nothing runs yet."""
    return [
        {
            "VariantName": v.variant_name,
            "DeployedImages": [],
            "CurrentWeight": v.initial_weight,
            "DesiredWeight": v.initial_weight,
            "CurrentInstanceCount": 0,
            "DesiredInstanceCount": v.instance_count,
            "VariantStatus": [{"Status": "Creating", "StartTime": started}],
        }
        for v in spec.variants
    ]


def _reported_variants(
    variants: tuple[VariantStatus, ...], reported_at: float
) -> list[dict[str, Any]]:
    return [
        {
            "VariantName": v.variant_name,
            "DeployedImages": [
                {"SpecifiedImage": image, "ResolvedImage": image, "ResolutionTime": reported_at}
                for image in v.deployed_images
            ],
            "CurrentWeight": v.current_weight,
            "DesiredWeight": v.desired_weight,
            "CurrentInstanceCount": v.current_instance_count,
            "DesiredInstanceCount": v.desired_instance_count,
            "VariantStatus": (
                [{"Status": v.status, "StartTime": reported_at}]
                if v.status in VARIANT_STATUSES
                else []
            ),
        }
        for v in variants
    ]


def describe(
    *,
    name: str,
    arn: str,
    status: str,
    created: float,
    modified: float,
    state: EndpointState,
) -> dict[str, Any]:
    if state.variants is not None:
        variants = _reported_variants(state.variants, state.reported_at or modified)
    else:
        variants = _planned_variants(state.spec, created)
    out: dict[str, Any] = {
        "EndpointName": name,
        "EndpointArn": arn,
        "EndpointConfigName": state.config_name,
        "ProductionVariants": variants,
        "EndpointStatus": status,
        "CreationTime": created,
        "LastModifiedTime": modified,
    }
    if state.failure_reason:
        out["FailureReason"] = state.failure_reason
    if state.deployment_config:
        out["LastDeploymentConfig"] = state.deployment_config
    if state.pending is not None:
        started = state.pending_since or modified
        out["PendingDeploymentSummary"] = {
            "EndpointConfigName": state.pending.endpoint_config_name,
            "ProductionVariants": [
                {
                    "VariantName": v.variant_name,
                    "DesiredWeight": v.initial_weight,
                    "DesiredInstanceCount": v.instance_count,
                    "CurrentInstanceCount": 0,
                    "VariantStatus": [{"Status": "Creating", "StartTime": started}],
                }
                for v in state.pending.variants
            ],
            "StartTime": started,
        }
    return out
