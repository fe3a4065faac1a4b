"""Resolve an endpoint config and its models into the frozen `EndpointSpec` the deployer runs.

The snapshot is taken when CreateEndpoint/UpdateEndpoint is accepted and stored with the
endpoint, so deleting or re-creating a model afterwards does not change what runs (SageMaker
behaves the same, and its Python SDK deletes models while their endpoint is up).

Hostnames: a pipeline container keeps its ContainerHostname, or gets `container-<position>`
(1-based) when none of the pipeline's containers names one. A model with only a PrimaryContainer
(for which SageMaker ignores ContainerHostname) is one container named by its ContainerHostname
when given, else by the model's name — a name that is already unique and says what runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from polyhost.control.rules import positional_hostname
from polyhost.control.seam import (
    AsyncInferenceSpec,
    BlueGreenUpdate,
    ComponentRef,
    ContainerSpec,
    DataCaptureSpec,
    EndpointSpec,
    InferenceMode,
    RollingUpdate,
    RoutingStrategy,
    ServerlessSpec,
    VariantSpec,
    VariantStatus,
)

DEFAULT_DOWNLOAD_TIMEOUT_S = 3600


def _container(definition: Mapping[str, Any], hostname: str) -> ContainerSpec:
    cache = (definition.get("MultiModelConfig") or {}).get("ModelCacheSetting", "Enabled")
    return ContainerSpec(
        hostname=hostname,
        image=str(definition["Image"]),
        model_data_url=definition.get("ModelDataUrl"),
        environment=dict(definition.get("Environment") or {}),
        multi_model=definition.get("Mode") == "MultiModel",
        model_cache=cache != "Disabled",
    )


def model_containers(
    model_name: str, model: Mapping[str, Any]
) -> tuple[InferenceMode, tuple[ContainerSpec, ...]]:
    """The inference mode and containers (hostnames resolved) of a stored model."""
    primary = model.get("PrimaryContainer")
    if primary is not None:
        return "Serial", (_container(primary, primary.get("ContainerHostname") or model_name),)
    definitions: list[Mapping[str, Any]] = model.get("Containers") or []
    mode: InferenceMode = (model.get("InferenceExecutionConfig") or {}).get("Mode", "Serial")
    containers = tuple(
        _container(d, d.get("ContainerHostname") or positional_hostname(i))
        for i, d in enumerate(definitions)
    )
    return mode, containers


def async_inference(config: Mapping[str, Any]) -> AsyncInferenceSpec | None:
    """The config's AsyncInferenceConfig as the queue uses it; None without one. SageMaker
    defaults MaxConcurrentInvocationsPerInstance to a value of its choosing; one container call
    at a time per instance is the safe one here."""
    raw = config.get("AsyncInferenceConfig")
    if raw is None:
        return None
    output = raw.get("OutputConfig") or {}
    client = raw.get("ClientConfig") or {}
    notify = output.get("NotificationConfig") or {}
    return AsyncInferenceSpec(
        output_path=str(output.get("S3OutputPath", "")),
        failure_path=output.get("S3FailurePath"),
        max_concurrent_per_instance=int(client.get("MaxConcurrentInvocationsPerInstance", 1)),
        success_topic=notify.get("SuccessTopic"),
        error_topic=notify.get("ErrorTopic"),
        include_response_in=tuple(notify.get("IncludeInferenceResponseIn") or ()),
    )


def data_capture(config: Mapping[str, Any]) -> DataCaptureSpec | None:
    """The config's DataCaptureConfig as the runtime captures by it; None without one.
    CaptureMode InputAndOutput is both; the modes of several options add up."""
    raw = config.get("DataCaptureConfig")
    if raw is None:
        return None
    modes = {str(option.get("CaptureMode")) for option in raw.get("CaptureOptions") or ()}
    header = raw.get("CaptureContentTypeHeader") or {}
    return DataCaptureSpec(
        destination=str(raw["DestinationS3Uri"]),
        sampling_percentage=int(raw["InitialSamplingPercentage"]),
        enabled=bool(raw.get("EnableCapture", True)),
        capture_input=bool(modes & {"Input", "InputAndOutput"}),
        capture_output=bool(modes & {"Output", "InputAndOutput"}),
        csv_content_types=tuple(header.get("CsvContentTypes") or ()),
        json_content_types=tuple(header.get("JsonContentTypes") or ()),
        kms_key_id=raw.get("KmsKeyId"),
    )


def rolling_update(deployment_config: Mapping[str, Any] | None) -> RollingUpdate | None:
    """A DeploymentConfig's RollingUpdatePolicy as the deployer runs it (None: all at once),
    with the AutoRollbackConfiguration alarms it watches. The same for an inference component
    and an endpoint; what each accepts is checked before (`control.guardrails` for an
    endpoint's)."""
    config = deployment_config or {}
    policy = config.get("RollingUpdatePolicy")
    if policy is None:
        return None
    size = policy["MaximumBatchSize"]
    rollback = policy.get("RollbackMaximumBatchSize")
    alarms = (config.get("AutoRollbackConfiguration") or {}).get("Alarms") or ()
    return RollingUpdate(
        batch_type=size["Type"],
        batch_value=int(size["Value"]),
        wait_s=float(policy.get("WaitIntervalInSeconds", 0)),
        timeout_s=float(policy.get("MaximumExecutionTimeoutInSeconds", 28_800)),
        rollback_type=None if rollback is None else rollback["Type"],
        rollback_value=100 if rollback is None else int(rollback["Value"]),
        alarms=tuple(str(alarm["AlarmName"]) for alarm in alarms),
    )


def config_variants(config: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], bool]]:
    """(variant, is a shadow) of every variant a configuration runs: its ProductionVariants,
    then its ShadowProductionVariants."""
    return [
        *((variant, False) for variant in config.get("ProductionVariants") or []),
        *((variant, True) for variant in config.get("ShadowProductionVariants") or []),
    ]


def is_for_components(config: Mapping[str, Any]) -> bool:
    """Whether an endpoint config is one for inference components (no variant names a model)."""
    variants = config.get("ProductionVariants") or []
    return bool(variants) and all(v.get("ModelName") is None for v in variants)


def _managed_scaling(variant: Mapping[str, Any]) -> dict[str, Any]:
    scaling = variant.get("ManagedInstanceScaling") or {}
    if scaling.get("Status") != "ENABLED":
        return {}
    return {
        "min_instances": int(scaling.get("MinInstanceCount", 0)),
        "max_instances": int(scaling.get("MaxInstanceCount", 1)),
    }


def routing_strategy(variant: Mapping[str, Any]) -> RoutingStrategy:
    strategy = (variant.get("RoutingConfig") or {}).get("RoutingStrategy")
    return "RANDOM" if strategy == "RANDOM" else "LEAST_OUTSTANDING_REQUESTS"


def serverless_config(variant: Mapping[str, Any]) -> ServerlessSpec | None:
    config = variant.get("ServerlessConfig")
    if not config:
        return None
    provisioned = config.get("ProvisionedConcurrency")
    return ServerlessSpec(
        memory_mb=int(config["MemorySizeInMB"]),
        max_concurrency=int(config["MaxConcurrency"]),
        provisioned_concurrency=None if provisioned is None else int(provisioned),
    )


def build_spec(
    *,
    endpoint_name: str,
    endpoint_arn: str,
    config_name: str,
    config: Mapping[str, Any],
    models: Mapping[str, tuple[str, Mapping[str, Any]]],
    revision: int,
) -> EndpointSpec:
    """`models` maps a lowercased model name to (name as created, stored model). A config
    whose variants name no model is one for inference components: its variants are instances
    to place components on, and nothing runs until a component is created."""
    if is_for_components(config):
        return EndpointSpec(
            endpoint_name=endpoint_name,
            endpoint_arn=endpoint_arn,
            endpoint_config_name=config_name,
            variants=tuple(
                VariantSpec(
                    variant_name=v["VariantName"],
                    model_name="",
                    containers=(),
                    mode="Serial",
                    instance_count=int(v.get("InitialInstanceCount", 1)),
                    instance_type=v.get("InstanceType"),
                    routing=routing_strategy(v),
                    execution_role_arn=config.get("ExecutionRoleArn"),
                    **_managed_scaling(v),
                )
                for v in config["ProductionVariants"]
            ),
            revision=revision,
            for_components=True,
            data_capture=data_capture(config),
        )
    variants = []
    for variant, shadow in config_variants(config):
        model_name, model = models[str(variant["ModelName"]).lower()]
        mode, containers = model_containers(model_name, model)
        serverless = serverless_config(variant)
        variants.append(
            VariantSpec(
                variant_name=variant["VariantName"],
                model_name=model_name,
                containers=containers,
                mode=mode,
                instance_count=(
                    int(variant.get("InitialInstanceCount", 1))
                    if serverless is None
                    else int(serverless.provisioned_concurrency is not None)
                ),
                memory_mb=None if serverless is None else serverless.memory_mb,
                serverless=serverless,
                initial_weight=float(variant.get("InitialVariantWeight", 1.0)),
                instance_type=variant.get("InstanceType"),
                # None when not given: the server's default applies (--startup-timeout).
                startup_timeout_s=(
                    int(variant["ContainerStartupHealthCheckTimeoutInSeconds"])
                    if "ContainerStartupHealthCheckTimeoutInSeconds" in variant
                    else None
                ),
                download_timeout_s=int(
                    variant.get("ModelDataDownloadTimeoutInSeconds", DEFAULT_DOWNLOAD_TIMEOUT_S)
                ),
                execution_role_arn=model.get("ExecutionRoleArn"),
                routing=routing_strategy(variant),
                shadow=shadow,
            )
        )
    return EndpointSpec(
        endpoint_name=endpoint_name,
        endpoint_arn=endpoint_arn,
        endpoint_config_name=config_name,
        variants=tuple(variants),
        revision=revision,
        async_inference=async_inference(config),
        data_capture=data_capture(config),
    )


# -- JSON codec (the spec is stored with the endpoint) ----------------------------------------

T = TypeVar("T")


def _fields(cls: type[T], data: Mapping[str, Any]) -> dict[str, Any]:
    """Only the fields `cls` has: specs stored by another polyhost version still load."""
    names = {f.name for f in dataclasses.fields(cast(Any, cls))}
    return {k: v for k, v in data.items() if k in names}


def spec_to_json(spec: EndpointSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def _rolling_from_json(data: Mapping[str, Any]) -> RollingUpdate:
    rolling = _fields(RollingUpdate, data)
    rolling["alarms"] = tuple(rolling.get("alarms", ()))
    return RollingUpdate(**rolling)


def _guardrails_from_json(data: Mapping[str, Any]) -> BlueGreenUpdate | RollingUpdate:
    """UpdateEndpoint's plan: a blue/green one has its `traffic`, a rolling one its batch."""
    if "traffic" not in data:
        return _rolling_from_json(data)
    guard = _fields(BlueGreenUpdate, data)
    guard["steps"] = tuple(tuple(step) for step in guard.get("steps", ()))
    guard["variants"] = tuple(guard.get("variants", ()))
    guard["alarms"] = tuple(guard.get("alarms", ()))
    return BlueGreenUpdate(**guard)


def spec_from_json(data: Mapping[str, Any]) -> EndpointSpec:
    variants = []
    for raw_variant in data["variants"]:
        fields = _fields(VariantSpec, raw_variant)
        fields["containers"] = tuple(
            ContainerSpec(**_fields(ContainerSpec, c)) for c in raw_variant["containers"]
        )
        fields["copy_instances"] = tuple(fields.get("copy_instances", ()))
        if fields.get("serverless") is not None:
            fields["serverless"] = ServerlessSpec(**_fields(ServerlessSpec, fields["serverless"]))
        variants.append(VariantSpec(**fields))
    fields = _fields(EndpointSpec, data)
    fields["variants"] = tuple(variants)
    raw_component = data.get("component")
    if raw_component is not None:
        fields["component"] = ComponentRef(**_fields(ComponentRef, raw_component))
    raw_rolling = data.get("rolling")
    if raw_rolling is not None:
        fields["rolling"] = _rolling_from_json(raw_rolling)
    raw_guardrails = data.get("guardrails")
    if raw_guardrails is not None:
        fields["guardrails"] = _guardrails_from_json(raw_guardrails)
    raw_async = data.get("async_inference")
    if raw_async is not None:
        async_fields = _fields(AsyncInferenceSpec, raw_async)
        async_fields["include_response_in"] = tuple(async_fields.get("include_response_in", ()))
        fields["async_inference"] = AsyncInferenceSpec(**async_fields)
    raw_capture = data.get("data_capture")
    if raw_capture is not None:
        capture = _fields(DataCaptureSpec, raw_capture)
        for types in ("csv_content_types", "json_content_types"):
            capture[types] = tuple(capture.get(types, ()))
        fields["data_capture"] = DataCaptureSpec(**capture)
    return EndpointSpec(**fields)


def variant_status_to_json(status: VariantStatus) -> dict[str, Any]:
    return dataclasses.asdict(status)


def variant_status_from_json(data: Mapping[str, Any]) -> VariantStatus:
    fields = _fields(VariantStatus, data)
    fields["deployed_images"] = tuple(fields.get("deployed_images", ()))
    return VariantStatus(**fields)
