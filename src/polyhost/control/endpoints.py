"""An endpoint's lifecycle: what the control plane records, and how deployer reports move it.

The endpoint keeps the spec it runs (`spec`) and, during an update, the spec it is moving to
(`pending`). The deployer reports per revision; a report for a revision that is neither is stale
(an update superseded it, or the endpoint was deleted) and is ignored.

    Creating --InService--> InService --UpdateEndpoint--> Updating --InService--> InService (new)
        \\--Failed--> Failed                                 \\--failure--> InService (old config,
                                                                            FailureReason set)
                                                            \\--RollingBack--> InService (old
                                                                    config, FailureReason set)

A deployment with guardrails (a BlueGreenUpdatePolicy) that an alarm or its time bound undoes
reports RollingBack, then InService on the old config with the reason. A server restarted while
RollingBack starts the old revision again (not the update), and its InService ends the rollback.

A failed update falls back to InService only while the old revision still serves: after a
restart in the middle of an update only the new revision is started again, so its failure
leaves the endpoint Failed.

UpdateEndpointWeightsAndCapacities moves the endpoint through the same states with a revision
of its own (`with_weights_and_capacities`): the serving spec with new instance counts and
weights, which the deployer applies in place. While it is pending, DescribeEndpoint shows the
new values as the variants' Desired ones (and no PendingDeploymentSummary: the config stays).
Once it serves, it is the endpoint's spec, stored like any other, so a restart brings it back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from polyhost.control.seam import (
    DataCaptureSpec,
    EndpointSpec,
    ServerlessSpec,
    StatusReport,
    VariantSpec,
    VariantStatus,
)
from polyhost.control.specs import (
    spec_from_json,
    spec_to_json,
    variant_status_from_json,
    variant_status_to_json,
)
from polyhost.errors import ValidationException

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
    # The pending update is an UpdateEndpointWeightsAndCapacities (applied in place).
    in_place: bool = False

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
            "in_place": self.in_place,
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
            in_place=bool(doc.get("in_place")),
        )


def begin_update(
    state: EndpointState,
    spec: EndpointSpec,
    *,
    now: float,
    status: str,
    deployment_config: dict[str, Any] | None,
) -> EndpointState:
    """The state after UpdateEndpoint (or UpdateEndpointWeightsAndCapacities: `spec.in_place`)
    was accepted; the caller checked `status` allows it."""
    return replace(
        state,
        pending=spec,
        pending_since=now,
        revision=spec.revision,
        was_serving=status == "InService",
        deployment_config=deployment_config or state.deployment_config,
        in_place=spec.in_place,
    )


def desired_spec(status: str, state: EndpointState) -> EndpointSpec | None:
    """What should run for this endpoint after a server start (None: nothing)."""
    if status == "RollingBack":
        return state.spec  # the update was being undone: the old revision runs again
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
        cleared = replace(state, pending=None, pending_since=None, reported_at=now, in_place=False)
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
        if report.status == "RollingBack":
            # Deployment guardrails: an alarm or the time bound undoes the update.
            return "RollingBack", replace(
                state, failure_reason=reason or state.failure_reason, reported_at=now
            )
        return status, replace(state, reported_at=now)  # progress of the update
    if report.revision != state.spec.revision:
        return None
    if pending is not None and status == "RollingBack" and report.status == "InService":
        # A rollback the server restarted in the middle of: the old revision serves again.
        return "InService", replace(
            state,
            pending=None,
            pending_since=None,
            in_place=False,
            variants=variants or state.variants,
            reported_at=now,
        )
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


# -- UpdateEndpointWeightsAndCapacities ---------------------------------------------------------


def check_weights_and_capacities(
    arn: str, spec: EndpointSpec, desired: list[dict[str, Any]]
) -> None:
    """SageMaker's rules that need the endpoint (the rules of the request alone are
    `rules.weights_and_capacities_rules`): each entry names one of its variants. An endpoint
    for inference components is refused: its instances follow the copies placed on them, and
    a request picks a component, not a variant, so neither member would mean anything."""
    if spec.for_components:
        raise ValidationException(
            f'Endpoint "{arn}" hosts inference components, whose copies decide its instances '
            "and its traffic: scale a component with UpdateInferenceComponentRuntimeConfig "
            "(CopyCount), and give the variant ManagedInstanceScaling (in a new endpoint "
            "configuration, UpdateEndpoint) for instances to be added and removed to fit them."
        )
    known = [v.variant_name for v in spec.variants]
    serverless = [
        str(d["VariantName"])
        for d in desired
        if d.get("DesiredInstanceCount") is not None
        and any(v.variant_name == d["VariantName"] and v.serverless for v in spec.variants)
    ]
    if serverless:
        raise ValidationException(
            f'The variant(s) "{", ".join(serverless)}" of endpoint "{arn}" are serverless: '
            "they have no instance count to set (one instance starts on demand); remove "
            "DesiredInstanceCount, or give ProvisionedConcurrency in a new endpoint "
            "configuration (UpdateEndpoint)."
        )
    unknown = [str(d["VariantName"]) for d in desired if d["VariantName"] not in known]
    if unknown:
        raise ValidationException(
            f'The variant(s) "{", ".join(unknown)}" not found in endpoint "{arn}": VariantName '
            f"must be one of [{', '.join(known)}]."
        )
    by_name = {v.variant_name: v for v in spec.variants}
    for entry in desired:
        update = entry.get("ServerlessUpdateConfig")
        if update is None:
            continue
        variant = by_name[entry["VariantName"]]
        if variant.serverless is None:
            raise ValidationException(
                f'The variant "{variant.variant_name}" of endpoint "{arn}" is not serverless: '
                "ServerlessUpdateConfig changes a serverless variant's MaxConcurrency and "
                "ProvisionedConcurrency; use DesiredInstanceCount for an instance-based one."
            )
        updated = _serverless_updated(variant.serverless, update)
        provisioned = updated.provisioned_concurrency
        if provisioned is not None and provisioned > updated.max_concurrency:
            raise ValidationException(
                f'The variant "{variant.variant_name}" of endpoint "{arn}" would have '
                f"ProvisionedConcurrency {provisioned} above its MaxConcurrency "
                f"{updated.max_concurrency}: ProvisionedConcurrency must be less than or "
                "equal to MaxConcurrency."
            )


def _serverless_updated(serverless: ServerlessSpec, update: dict[str, Any]) -> ServerlessSpec:
    """A ServerlessUpdateConfig applied: the members it gives replace the variant's."""
    concurrency, provisioned = update.get("MaxConcurrency"), update.get("ProvisionedConcurrency")
    return replace(
        serverless,
        max_concurrency=serverless.max_concurrency if concurrency is None else int(concurrency),
        provisioned_concurrency=(
            serverless.provisioned_concurrency if provisioned is None else int(provisioned)
        ),
    )


def _desired_variant(variant: VariantSpec, entry: dict[str, Any] | None) -> VariantSpec:
    if entry is None:
        return variant
    weight, count = entry.get("DesiredWeight"), entry.get("DesiredInstanceCount")
    serverless, update = variant.serverless, entry.get("ServerlessUpdateConfig")
    if serverless is not None and update is not None:
        serverless = _serverless_updated(serverless, update)
    return replace(
        variant,
        initial_weight=variant.initial_weight if weight is None else float(weight),
        instance_count=variant.instance_count if count is None else int(count),
        serverless=serverless,
    )


def with_weights_and_capacities(
    spec: EndpointSpec, desired: list[dict[str, Any]], revision: int
) -> EndpointSpec:
    """`spec` (what serves) with the entries' weights and instance counts, as a revision the
    deployer applies in place; variants no entry names keep theirs."""
    wanted = {str(d["VariantName"]): d for d in desired}
    return replace(
        spec,
        variants=tuple(_desired_variant(v, wanted.get(v.variant_name)) for v in spec.variants),
        revision=revision,
        rolling=None,
        in_place=True,
    )


# -- DescribeEndpoint ---------------------------------------------------------------------------


def capture_summary(capture: DataCaptureSpec) -> dict[str, Any]:
    """DescribeEndpoint's DataCaptureConfig (DataCaptureConfigSummary) for the config that
    serves: Started while invocations are captured, Stopped when EnableCapture is false.
    KmsKeyId is the config's, echoed (nothing is encrypted with it here), and left out when
    the config gave none."""
    summary: dict[str, Any] = {
        "EnableCapture": capture.enabled,
        "CaptureStatus": "Started" if capture.enabled else "Stopped",
        "CurrentSamplingPercentage": capture.sampling_percentage,
        "DestinationS3Uri": capture.destination,
    }
    if capture.kms_key_id is not None:
        summary["KmsKeyId"] = capture.kms_key_id
    return summary


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


def _with_desired(
    variants: list[dict[str, Any]], pending: EndpointSpec, started: float
) -> list[dict[str, Any]]:
    """Summaries whose Desired values are those of a pending in-place update; a variant it
    changes is Updating until the deployer reports it done."""
    targets = {v.variant_name: v for v in pending.variants}
    shown: list[dict[str, Any]] = []
    for summary in variants:
        target = targets.get(summary["VariantName"])
        if target is None:
            shown.append(summary)
            continue
        current = (summary.get("CurrentWeight"), summary.get("CurrentInstanceCount"))
        wanted_now = (target.initial_weight, target.instance_count)
        status = (
            [{"Status": "Updating", "StartTime": started}]
            if current != wanted_now
            else summary["VariantStatus"]
        )
        shown.append(
            {
                **summary,
                "DesiredWeight": target.initial_weight,
                "DesiredInstanceCount": target.instance_count,
                "VariantStatus": status,
            }
        )
    return shown


def _split_shadows(out: dict[str, Any], spec: EndpointSpec) -> None:
    """Describe lists a shadow variant under ShadowProductionVariants, not ProductionVariants."""
    shadows = {v.variant_name for v in spec.variants if v.shadow}
    if not shadows:
        return
    summaries = out["ProductionVariants"]
    out["ProductionVariants"] = [v for v in summaries if v["VariantName"] not in shadows]
    out["ShadowProductionVariants"] = [v for v in summaries if v["VariantName"] in shadows]


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
    if state.spec.data_capture is not None:
        out["DataCaptureConfig"] = capture_summary(state.spec.data_capture)
    if state.deployment_config:
        out["LastDeploymentConfig"] = state.deployment_config
    if state.pending is not None and state.in_place:
        started = state.pending_since or modified
        out["ProductionVariants"] = _with_desired(variants, state.pending, started)
    elif state.pending is not None:
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
    _serverless_summaries(out, state.spec)
    _split_shadows(out, state.spec)
    return out


def _serverless_summaries(out: dict[str, Any], spec: EndpointSpec) -> None:
    """A serverless variant's summary shows its ServerlessConfig, current and desired."""
    configs = {
        v.variant_name: _serverless_config(v.serverless)
        for v in spec.variants
        if v.serverless is not None
    }
    if not configs:
        return
    for summary in out["ProductionVariants"]:
        config = configs.get(summary["VariantName"])
        if config is not None:
            summary["CurrentServerlessConfig"] = dict(config)
            summary["DesiredServerlessConfig"] = dict(config)


def _serverless_config(serverless: ServerlessSpec) -> dict[str, int]:
    config = {
        "MemorySizeInMB": serverless.memory_mb,
        "MaxConcurrency": serverless.max_concurrency,
    }
    if serverless.provisioned_concurrency is not None:
        config["ProvisionedConcurrency"] = serverless.provisioned_concurrency
    return config
