"""RegisterScalableTarget, DeregisterScalableTarget, DescribeScalableTargets and the tag
operations (which tag scalable targets, the only taggable resource here as on AWS).

A target is registered only on a resource that exists (asked of the control plane), with a
range that holds: MinCapacity ≤ MaxCapacity, and at least 1 for a variant (only inference
components scale to 0). Registering moves a capacity outside the range inside it, as AWS does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from polyhost.autoscaling.context import Context
from polyhost.autoscaling.errors import (
    ConcurrentUpdateException,
    LimitExceededException,
    ObjectNotFoundException,
    ResourceNotFoundException,
    ValidationException,
)
from polyhost.autoscaling.pages import page
from polyhost.autoscaling.policies import delete_policies_of
from polyhost.autoscaling.resources import NAMESPACE, check_namespace, parse_resource, target_arn
from polyhost.autoscaling.scaler import clamp
from polyhost.autoscaling.store import Doc
from polyhost.errors import ServiceError

MAX_TARGETS = 500
MAX_TAGS = 50
SUSPENDED = ("DynamicScalingInSuspended", "DynamicScalingOutSuspended", "ScheduledScalingSuspended")


class TooManyTagsException(ServiceError):
    code = "TooManyTagsException"
    status = 400


def default_role(account_id: str) -> str:
    """The service-linked role AWS names for SageMaker targets (echoed: nothing assumes it)."""
    return (
        f"arn:aws:iam::{account_id}:role/aws-service-role/"
        "sagemaker.application-autoscaling.amazonaws.com/"
        "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
    )


def register_scalable_target(ctx: Context, params: Mapping[str, Any]) -> dict[str, Any]:
    check_namespace(params["ServiceNamespace"])
    resource = parse_resource(params["ResourceId"], params["ScalableDimension"])
    with ctx.scaler.lock:
        existing = ctx.store.target(resource.resource_id)
        if existing is None:
            missing = [m for m in ("MinCapacity", "MaxCapacity") if params.get(m) is None]
            if missing:
                raise ValidationException(
                    f"{' and '.join(missing)} must be given when registering a new scalable target."
                )
            if ctx.store.count_targets() >= MAX_TARGETS:
                raise LimitExceededException(
                    f"At most {MAX_TARGETS} scalable targets: deregister one first."
                )
        before: Doc = existing or {}
        low = int(params.get("MinCapacity", before.get("MinCapacity", 0)))
        high = int(params.get("MaxCapacity", before.get("MaxCapacity", 0)))
        if low > high:
            raise ValidationException(
                f"MinCapacity ({low}) must not be greater than MaxCapacity ({high})."
            )
        if low < 1 and not resource.is_component:
            raise ValidationException(
                "MinCapacity of an endpoint variant must be at least 1: only inference "
                "components scale to 0."
            )
        try:
            reading = ctx.capacity.read(resource)
        except ServiceError as error:
            raise ValidationException(
                f"The resource {resource.resource_id[:200]} cannot be scaled: {error.message}"
            ) from None
        tags = dict(existing.get("Tags", {}) if existing else {})
        tags.update(params.get("Tags") or {})
        if len(tags) > MAX_TAGS:
            raise TooManyTagsException(f"A scalable target has at most {MAX_TAGS} tags.")
        doc: Doc = dict(existing or {})
        suspended = dict(doc.get("SuspendedState") or {k: False for k in SUSPENDED})
        suspended.update(params.get("SuspendedState") or {})
        doc.update(
            {
                "ServiceNamespace": NAMESPACE,
                "ResourceId": resource.resource_id,
                "ScalableDimension": resource.dimension,
                "MinCapacity": low,
                "MaxCapacity": high,
                "RoleARN": params.get("RoleARN")
                or doc.get("RoleARN")
                or default_role(ctx.account_id),
                "CreationTime": doc.get("CreationTime", ctx.clock()),
                "SuspendedState": suspended,
                "ScalableTargetARN": doc.get("ScalableTargetARN")
                or target_arn(ctx.region, ctx.account_id),
                "Tags": tags,
            }
        )
        ctx.store.put_target(doc)
        wanted = clamp(reading.desired, doc)
        if wanted != reading.desired:
            if reading.status in ("Creating", "Updating"):
                raise ConcurrentUpdateException(
                    f"The target was registered, but its {resource.unit} ({reading.desired}) is "
                    f"outside {low} to {high} and the resource is {reading.status}: register "
                    "again once it is InService to move it inside."
                )
            which = "minimum" if wanted > reading.desired else "maximum"
            ctx.scaler.scale(
                doc,
                wanted,
                f"{which} capacity was set to {low if which == 'minimum' else high}",
                current=reading.desired,
            )
    return {"ScalableTargetARN": doc["ScalableTargetARN"]}


def deregister_scalable_target(ctx: Context, params: Mapping[str, Any]) -> dict[str, Any]:
    check_namespace(params["ServiceNamespace"])
    parse_resource(params["ResourceId"], params["ScalableDimension"])
    with ctx.scaler.lock:
        target = ctx.store.target(params["ResourceId"])
        if target is None or target["ScalableDimension"] != params["ScalableDimension"]:
            raise ObjectNotFoundException(
                "No scalable target found for service namespace: sagemaker, resource ID: "
                f"{params['ResourceId'][:200]}, scalable dimension: "
                f"{params['ScalableDimension']}."
            )
        delete_policies_of(ctx, target["ResourceId"])
        ctx.store.delete_target(target["ResourceId"])
    return {}


def shown_target(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if not k.startswith("_") and k != "Tags"}


def describe_scalable_targets(ctx: Context, params: Mapping[str, Any]) -> dict[str, Any]:
    check_namespace(params["ServiceNamespace"])
    ids = set(params.get("ResourceIds") or [])
    found = [
        shown_target(t)
        for t in ctx.store.targets()
        if (not ids or t["ResourceId"] in ids)
        and params.get("ScalableDimension") in (None, t["ScalableDimension"])
    ]
    return page("DescribeScalableTargets", params, found, "ScalableTargets")


def _tagged(ctx: Context, arn: str) -> Doc:
    found = ctx.store.target_by_arn(arn)
    if found is None:
        raise ResourceNotFoundException(
            f"No scalable target has the ARN {arn[:300]}: tags go on scalable targets, by the "
            "ScalableTargetARN DescribeScalableTargets shows."
        )
    return found


def tag_resource(ctx: Context, params: Mapping[str, Any]) -> dict[str, Any]:
    with ctx.scaler.lock:
        target = _tagged(ctx, params["ResourceARN"])
        tags = {**target.get("Tags", {}), **params["Tags"]}
        if len(tags) > MAX_TAGS:
            raise TooManyTagsException(
                f"A scalable target has at most {MAX_TAGS} tags: remove some (UntagResource)."
            )
        target["Tags"] = tags
        ctx.store.put_target(target)
    return {}


def untag_resource(ctx: Context, params: Mapping[str, Any]) -> dict[str, Any]:
    with ctx.scaler.lock:
        target = _tagged(ctx, params["ResourceARN"])
        target["Tags"] = {
            k: v for k, v in target.get("Tags", {}).items() if k not in set(params["TagKeys"])
        }
        ctx.store.put_target(target)
    return {}


def list_tags_for_resource(ctx: Context, params: Mapping[str, Any]) -> dict[str, Any]:
    return {"Tags": dict(_tagged(ctx, params["ResourceARN"]).get("Tags", {}))}
