"""UpdateEndpoint's DeploymentConfig (deployment guardrails): SageMaker's rules, and the plan.

botocore's model already holds the shape's own rules (required members, enums, ranges); what
is checked here needs the endpoint: one update policy, not both; a canary or a linear step
measured against the new fleet (a canary is at most half of a variant's instances, a linear
step 10% to 50% of them), a rolling batch 5% to 50% of the one variant's instances (rolling
updates are for endpoints of one instance-based variant, as on SageMaker), the variants of the
new configuration being those that serve (each variant's traffic moves to its namesake), the
alarms named for auto-rollback existing, and MaximumExecutionTimeout leaving room for the
waits. The result is the `BlueGreenUpdate` or `RollingUpdate` the deployer runs
(docs/deployment-guardrails.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, cast

from polyhost.control.seam import AlarmReader, BlueGreenUpdate, EndpointSpec, RollingUpdate
from polyhost.control.specs import rolling_update
from polyhost.errors import ValidationException

MAX_CANARY_PERCENT = 50
MIN_LINEAR_PERCENT = 10
MAX_LINEAR_PERCENT = 50
MIN_BATCH_PERCENT = 5
MAX_BATCH_PERCENT = 50
_POLICY = "DeploymentConfig.BlueGreenUpdatePolicy"
_ROUTING = f"{_POLICY}.TrafficRoutingConfiguration"
_ROLLING = "DeploymentConfig.RollingUpdatePolicy"


def _size(member: str, size: Mapping[str, Any], variant: str, count: int, top: int) -> int:
    """The instances of a variant of `count` a CanarySize or LinearStepSize names, at most
    `top` percent of them."""
    kind, value = str(size["Type"]), int(size["Value"])
    if kind == "CAPACITY_PERCENT":
        if value > top:
            raise ValidationException(
                f"{_ROUTING}.{member}.Value ({value}, CAPACITY_PERCENT) must be at most {top}: "
                f"the share of the new fleet's capacity shifted at a time is {top}% at most."
            )
        instances = count * value // 100
        if instances < 1:
            raise ValidationException(
                f"{_ROUTING}.{member} ({value}% of variant {variant}'s {count} instances) is "
                "less than one instance: give a larger percentage, or an INSTANCE_COUNT."
            )
        return instances
    if value * 100 > count * top:
        most = count * top // 100
        hint = f"give at most {most}" if most else "give the variant more instances"
        raise ValidationException(
            f"{_ROUTING}.{member}.Value ({value}, INSTANCE_COUNT) is more than {top}% of variant "
            f"{variant}'s {count} instances in the new endpoint configuration: {hint}."
        )
    return value


def _linear_floor(step: int, variant: str, count: int) -> None:
    if step * 100 < count * MIN_LINEAR_PERCENT:
        raise ValidationException(
            f"{_ROUTING}.LinearStepSize ({step} of variant {variant}'s {count} instances) is "
            f"less than {MIN_LINEAR_PERCENT}% of the new fleet: give a larger step."
        )


def _steps(
    traffic: str, routing: Mapping[str, Any], new: EndpointSpec
) -> tuple[tuple[int, ...], ...]:
    """Per step, per variant of `new`: its instances routed to beside the old fleet."""
    if traffic == "ALL_AT_ONCE":
        return ()
    if traffic == "CANARY":
        size = routing["CanarySize"]
        return (
            tuple(
                _size("CanarySize", size, v.variant_name, v.instance_count, MAX_CANARY_PERCENT)
                for v in new.variants
            ),
        )
    size = routing["LinearStepSize"]
    per_variant = []
    for v in new.variants:
        step = _size("LinearStepSize", size, v.variant_name, v.instance_count, MAX_LINEAR_PERCENT)
        _linear_floor(step, v.variant_name, v.instance_count)
        per_variant.append((step, v.instance_count))
    partial = max(-(-count // step) - 1 for step, count in per_variant)
    return tuple(
        tuple(min(count, (i + 1) * step) for step, count in per_variant) for i in range(partial)
    )


def _check_shapes(traffic: str, routing: Mapping[str, Any]) -> None:
    canary, linear = routing.get("CanarySize"), routing.get("LinearStepSize")
    if traffic == "CANARY" and not canary:
        raise ValidationException(
            f"{_ROUTING}.CanarySize is required when Type is CANARY: give the share of the new "
            "fleet that takes traffic first (INSTANCE_COUNT or CAPACITY_PERCENT)."
        )
    if traffic == "LINEAR" and not linear:
        raise ValidationException(
            f"{_ROUTING}.LinearStepSize is required when Type is LINEAR: give the share of the "
            "new fleet each step shifts traffic to (INSTANCE_COUNT or CAPACITY_PERCENT)."
        )
    if canary and traffic != "CANARY":
        raise ValidationException(
            f"{_ROUTING}.CanarySize is only for Type CANARY (Type is {traffic}): remove it."
        )
    if linear and traffic != "LINEAR":
        raise ValidationException(
            f"{_ROUTING}.LinearStepSize is only for Type LINEAR (Type is {traffic}): remove it."
        )


def _check_variants(traffic: str, new: EndpointSpec, serving: EndpointSpec) -> None:
    if traffic == "ALL_AT_ONCE":
        return
    wanted = sorted(v.variant_name for v in new.variants)
    now = sorted(v.variant_name for v in serving.variants)
    if wanted != now:
        raise ValidationException(
            f"A {traffic} traffic shift moves each variant's traffic to the variant of the same "
            f"name in the new endpoint configuration {new.endpoint_config_name}, whose variants "
            f"({', '.join(wanted)}) are not those serving ({', '.join(now)}): give it the same "
            "variant names, or use Type ALL_AT_ONCE."
        )


def _check_alarms(names: list[str], alarm_state: AlarmReader | None) -> None:
    missing = [n for n in names if alarm_state is None or alarm_state(n) is None]
    if missing:
        raise ValidationException(
            "DeploymentConfig.AutoRollbackConfiguration.Alarms names alarms that do not exist: "
            f"{', '.join(missing)}. Create them with CloudWatch's PutMetricAlarm first."
        )


def _blue_green(
    policy: Mapping[str, Any],
    new: EndpointSpec,
    serving: EndpointSpec,
    alarms: list[str],
) -> BlueGreenUpdate:
    routing = policy["TrafficRoutingConfiguration"]
    traffic = str(routing["Type"])
    _check_shapes(traffic, routing)
    _check_variants(traffic, new, serving)
    steps = _steps(traffic, routing, new)
    wait_s = float(routing["WaitIntervalInSeconds"])
    termination_s = float(policy.get("TerminationWaitInSeconds", 0))
    timeout = policy.get("MaximumExecutionTimeoutInSeconds")
    bakes = max(len(steps), 1)
    waits = wait_s * bakes + termination_s
    if timeout is not None and float(timeout) <= waits:
        raise ValidationException(
            f"{_POLICY}.MaximumExecutionTimeoutInSeconds ({timeout}) must be larger than the "
            f"deployment's waits: {bakes} bake(s) of WaitIntervalInSeconds ({wait_s:g}) plus "
            f"TerminationWaitInSeconds ({termination_s:g}) = {waits:g} s."
        )
    return BlueGreenUpdate(
        traffic=cast(Literal["ALL_AT_ONCE", "CANARY", "LINEAR"], traffic),  # the model's enum
        wait_s=wait_s,
        steps=steps,
        variants=tuple(v.variant_name for v in new.variants),
        termination_wait_s=termination_s,
        timeout_s=None if timeout is None else float(timeout),
        alarms=tuple(alarms),
    )


def _check_rolling_fleets(new: EndpointSpec, serving: EndpointSpec) -> None:
    """SageMaker rolls only endpoints of one instance-based variant, into its namesake."""
    for spec, which in ((new, "the new endpoint configuration"), (serving, "the serving one")):
        names = ", ".join(v.variant_name for v in spec.variants)
        if len(spec.variants) != 1:
            raise ValidationException(
                f"A rolling update replaces the instances of an endpoint's one variant, and "
                f"{which} ({spec.endpoint_config_name}) has {len(spec.variants)} ({names}, "
                "shadow variants included): use a BlueGreenUpdatePolicy for an endpoint of "
                "several variants."
            )
        if spec.variants[0].serverless is not None:
            raise ValidationException(
                f"Variant {names} of {which} ({spec.endpoint_config_name}) is serverless: a "
                "rolling update replaces instances, which a serverless variant does not have. "
                "Update it without a RollingUpdatePolicy (or with a BlueGreenUpdatePolicy)."
            )
    if new.variants[0].variant_name != serving.variants[0].variant_name:
        raise ValidationException(
            f"A rolling update replaces variant {serving.variants[0].variant_name}'s instances "
            "by those of the variant of the same name, and the new endpoint configuration "
            f"{new.endpoint_config_name} names its variant {new.variants[0].variant_name}: "
            "give it the serving variant's name."
        )


def _check_batch(plan: RollingUpdate, variant: str, count: int) -> None:
    """MaximumBatchSize is 5% to 50% of the variant's instances in the new configuration."""
    member = f"{_ROLLING}.MaximumBatchSize"
    if count < 2:
        raise ValidationException(
            f"A rolling update replaces instances in batches of {MIN_BATCH_PERCENT}% to "
            f"{MAX_BATCH_PERCENT}% of the variant's, and variant {variant} has {count} instance "
            "in the new endpoint configuration: give it at least 2 instances, or use a "
            "BlueGreenUpdatePolicy."
        )
    value = plan.batch_value
    if plan.batch_type == "CAPACITY_PERCENT":
        if not MIN_BATCH_PERCENT <= value <= MAX_BATCH_PERCENT:
            raise ValidationException(
                f"{member}.Value ({value}, CAPACITY_PERCENT) must be from {MIN_BATCH_PERCENT} "
                f"to {MAX_BATCH_PERCENT}: a batch is that share of the variant's instances."
            )
        return
    if value * 100 > count * MAX_BATCH_PERCENT:
        raise ValidationException(
            f"{member}.Value ({value}, INSTANCE_COUNT) is more than {MAX_BATCH_PERCENT}% of "
            f"variant {variant}'s {count} instances in the new endpoint configuration: give at "
            f"most {count * MAX_BATCH_PERCENT // 100}."
        )
    if value * 100 < count * MIN_BATCH_PERCENT:
        least = -(-count * MIN_BATCH_PERCENT // 100)
        raise ValidationException(
            f"{member}.Value ({value}, INSTANCE_COUNT) is less than {MIN_BATCH_PERCENT}% of "
            f"variant {variant}'s {count} instances in the new endpoint configuration: give at "
            f"least {least}."
        )


def _rolling(
    deployment_config: Mapping[str, Any], new: EndpointSpec, serving: EndpointSpec
) -> RollingUpdate:
    _check_rolling_fleets(new, serving)
    plan = rolling_update(deployment_config)
    assert plan is not None
    variant = new.variants[0]
    _check_batch(plan, variant.variant_name, variant.instance_count)
    if plan.rollback_type == "CAPACITY_PERCENT" and plan.rollback_value > 100:
        raise ValidationException(
            f"{_ROLLING}.RollbackMaximumBatchSize.Value ({plan.rollback_value}, "
            "CAPACITY_PERCENT) must be at most 100 (the whole old fleet at once)."
        )
    timeout = deployment_config["RollingUpdatePolicy"].get("MaximumExecutionTimeoutInSeconds")
    bakes = -(-variant.instance_count // plan.batch(variant.instance_count))
    waits = bakes * plan.wait_s
    if timeout is not None and float(timeout) <= waits:
        raise ValidationException(
            f"{_ROLLING}.MaximumExecutionTimeoutInSeconds ({timeout}) must be larger than the "
            f"update's waits: {bakes} batch(es) each baked WaitIntervalInSeconds "
            f"({plan.wait_s:g}) = {waits:g} s."
        )
    return plan


def deployment_guardrails(
    deployment_config: Mapping[str, Any] | None,
    *,
    new: EndpointSpec,
    serving: EndpointSpec,
    alarm_state: AlarmReader | None,
) -> BlueGreenUpdate | RollingUpdate | None:
    """The deployment `deployment_config` asks for when `new` replaces `serving`: a blue/green
    shift, a rolling update, or None for none (an update all at once, once the new fleet is
    healthy). Raises ValidationException."""
    if not deployment_config:
        return None
    policy = deployment_config.get("BlueGreenUpdatePolicy")
    rolling = deployment_config.get("RollingUpdatePolicy")
    if policy and rolling:
        raise ValidationException(
            "DeploymentConfig takes one update policy: a BlueGreenUpdatePolicy or a "
            "RollingUpdatePolicy, not both. Remove one of them."
        )
    if not policy and not rolling:
        raise ValidationException(
            "DeploymentConfig needs a BlueGreenUpdatePolicy (its TrafficRoutingConfiguration "
            "says how traffic shifts to the new fleet) or a RollingUpdatePolicy (its "
            "MaximumBatchSize says how many instances are replaced at a time); "
            "AutoRollbackConfiguration alone has no deployment to roll back."
        )
    if new.for_components or serving.for_components:
        raise ValidationException(
            "DeploymentConfig applies to an endpoint serving models; an endpoint for inference "
            "components updates each component with UpdateInferenceComponent's DeploymentConfig."
        )
    alarms = [
        str(a["AlarmName"])
        for a in (deployment_config.get("AutoRollbackConfiguration") or {}).get("Alarms") or ()
    ]
    plan: BlueGreenUpdate | RollingUpdate
    if policy:
        plan = _blue_green(policy, new, serving, alarms)
    else:
        plan = _rolling(deployment_config, new, serving)
    _check_alarms(alarms, alarm_state)
    return plan
