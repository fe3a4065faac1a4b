"""Cross-field rules the service model cannot express (docs/contract.md, "Names and limits").

They run on the raw request next to the shape validation, so one answer lists everything that is
wrong. Every rule therefore reads defensively: a member of the wrong type is the shape
validator's to report, and a rule simply skips it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from polyhost import framework_images
from polyhost.control.image_catalog import ImageCatalog
from polyhost.control.validation import element_path, violation
from polyhost.modeldata.local_policy import LocalModelPolicy, file_url_path

MAX_ENVIRONMENT_BYTES = 32 * 1024
PIPELINE_MIN, PIPELINE_MAX = 2, 15
RESERVED_TAG_PREFIX = "aws:"


# C0 controls and DEL: never part of a path or an object key anyone means, and NUL cuts a path
# short in every system call (Python refuses it with "embedded null byte").
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def positional_hostname(index: int) -> str:
    """Hostname of the container at `index` (0-based) of a Serial pipeline that names none."""
    return f"container-{index + 1}"


def _encodable(text: str) -> bool:
    """False for text with a lone surrogate, which the shape validation reports already."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _mode(params: dict[str, Any]) -> str:
    config = params.get("InferenceExecutionConfig")
    mode = config.get("Mode") if isinstance(config, dict) else None
    return mode if mode in ("Serial", "Direct") else "Serial"


def _containers(params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(message path, container) of every well-formed container of a CreateModel request."""
    found: list[tuple[str, dict[str, Any]]] = []
    primary = params.get("PrimaryContainer")
    if isinstance(primary, dict):
        found.append(("primaryContainer", primary))
    containers = params.get("Containers")
    if isinstance(containers, list):
        for index, container in enumerate(containers):
            if isinstance(container, dict):
                found.append((element_path("containers", index), container))
    return found


def _duplicates(named: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Names (compared case-insensitively) that occur more than once, with their paths."""
    seen: dict[str, list[str]] = {}
    first: dict[str, str] = {}
    for name, path in named:
        key = name.lower()
        first.setdefault(key, name)
        seen.setdefault(key, []).append(path)
    return {first[key]: paths for key, paths in seen.items() if len(paths) > 1}


def _plain(path: str) -> str:
    """`containers.2.member` -> `containers.2`, for naming elements inside a sentence."""
    return path.removesuffix(".member")


@dataclass(frozen=True)
class RuleContext:
    """What the rules know of the server: its images and where local model data may come from."""

    images: ImageCatalog
    local_models: LocalModelPolicy = field(default_factory=LocalModelPolicy)


def model_rules(params: dict[str, Any], context: RuleContext) -> list[str]:
    found: list[str] = []
    primary = params.get("PrimaryContainer")
    containers = params.get("Containers")
    if containers == []:
        containers = None  # an empty list says no more than an absent one
    if primary is not None and containers is not None:
        found.append(
            "PrimaryContainer and Containers are mutually exclusive: give PrimaryContainer for "
            "a single container or Containers for several, not both"
        )
    elif primary is None and containers is None:
        found.append("Either PrimaryContainer or a non-empty Containers list is required")
    mode = _mode(params)
    if primary is not None and containers is None and mode == "Direct":
        found.append(
            "Value 'Direct' at 'inferenceExecutionConfig.mode' failed to satisfy constraint: "
            "Direct mode needs Containers; a model with only a PrimaryContainer has one container"
        )
    entries = _containers(params)
    found += _image_rules(entries, context.images)
    found += _environment_rules(entries)
    found += _model_data_rules(entries)
    found += _local_model_data_rules(entries, context.local_models)
    found += _multi_model_rules(entries, context.images)
    if isinstance(containers, list) and primary is None:
        pipeline = [e for e in entries if e[0] != "primaryContainer"]
        found += _pipeline_rules(pipeline, mode)
        if mode == "Serial":
            found += _serial_multi_model_rules(pipeline)
    return found


MULTI_MODEL = "MultiModel"


def is_multi_model(container: dict[str, Any]) -> bool:
    """Whether a container definition asks for a multi-model container (`Mode: MultiModel`)."""
    return container.get("Mode") == MULTI_MODEL


def _multi_model_rules(
    entries: list[tuple[str, dict[str, Any]]], images: ImageCatalog
) -> list[str]:
    """What SageMaker refuses of a `Mode: MultiModel` container: its ModelDataUrl is the prefix
    every TargetModel is read below (so it is required and no ModelDataSource may replace it),
    its image must serve the multi-model API, and MultiModelConfig means nothing without it."""
    found: list[str] = []
    for path, container in entries:
        config = container.get("MultiModelConfig")
        if not is_multi_model(container):
            if config is not None:
                found.append(
                    violation(
                        config,
                        f"{path}.multiModelConfig",
                        "MultiModelConfig applies only to a container with Mode MultiModel",
                    )
                )
            continue
        if container.get("ModelDataSource") is not None:
            found.append(
                violation(
                    container["ModelDataSource"],
                    f"{path}.modelDataSource",
                    "ModelDataSource is not supported with Mode MultiModel: give the prefix "
                    "of the model archives as ModelDataUrl",
                )
            )
        url = container.get("ModelDataUrl")
        if url is None:
            found.append(
                violation(
                    None,
                    f"{path}.modelDataUrl",
                    "Member must not be null: a MultiModel container needs the prefix its "
                    "models are read below (s3://bucket/prefix/, file:///dir/ or https://...)",
                )
            )
        elif isinstance(url, str) and url.startswith("https://") and not url.endswith("/"):
            found.append(
                violation(
                    url,
                    f"{path}.modelDataUrl",
                    "A MultiModel ModelDataUrl is a prefix: an https:// one must end with '/'",
                )
            )
        image = container.get("Image")
        if (
            isinstance(image, str)
            and images.knows_image(image)
            and framework_images.refusal(image) is None
            and not images.serves_multiple_models(image)
        ):
            found.append(
                violation(
                    image,
                    f"{path}.image",
                    "Member must name an image that serves multiple models: Mode MultiModel "
                    "needs an image that serves the multi-model API (the built-in stacks do; "
                    "mark an image of your own with multi_models = true in the --image-config "
                    "file)",
                )
            )
    return found


def _serial_multi_model_rules(entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    multi = [_plain(path) for path, container in entries if is_multi_model(container)]
    if len(multi) <= 1:
        return []
    return [
        f"An inference pipeline (Serial mode) may have at most one container with Mode "
        f"MultiModel; {', '.join(multi)} have it"
    ]


def _image_rules(entries: list[tuple[str, dict[str, Any]]], images: ImageCatalog) -> list[str]:
    found: list[str] = []
    for path, container in entries:
        image = container.get("Image")
        if image is None:
            found.append(violation(None, f"{path}.image", "Member must not be null"))
        elif not (
            isinstance(image, str)
            and 0 < len(image) <= 255
            and not any(ch.isspace() for ch in image)
            and _encodable(image)
        ):
            continue  # the shape validation's to report
        elif (refused := framework_images.refusal(image)) is not None:
            # SageMaker's GPU, Neuron and Elastic Inference images, whatever the backend: the
            # daemon may even have one, but nothing here can run what it is built for.
            found.append(
                violation(image, f"{path}.image", f"Member must name a CPU image: {refused}")
            )
        elif not images.knows_image(image):
            known = ", ".join(images.known_images())
            found.append(
                violation(
                    image,
                    f"{path}.image",
                    f"Member must name an image this server knows: [{known}] "
                    f"{framework_images.families_text()}; register other images in the file "
                    "given to `polyhost serve --image-config`",
                )
            )
    return found


def _environment_rules(entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    found: list[str] = []
    total = 0
    for path, container in entries:
        environment = container.get("Environment")
        if not isinstance(environment, dict):
            continue
        for key, value in environment.items():
            if not isinstance(value, str):
                continue
            total += len(key.encode("utf-8", "surrogatepass"))
            total += len(value.encode("utf-8", "surrogatepass"))
            if "\x00" in value:
                found.append(
                    violation(
                        {key: value},
                        f"{path}.environment",
                        "Map value must not contain the NUL character",
                    )
                )
    if total > MAX_ENVIRONMENT_BYTES:
        found.append(
            f"The Environment maps of a model may hold at most {MAX_ENVIRONMENT_BYTES} bytes of "
            f"keys and values together (all containers combined); these hold {total} bytes"
        )
    return found


def _model_data_rules(entries: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """ModelDataUrl becomes a file path (file://, percent-decoded) or an object key: no NUL or
    other control character, raw or percent-encoded in a file:// URL."""
    found: list[str] = []
    for path, container in entries:
        url = container.get("ModelDataUrl")
        if not isinstance(url, str):
            continue
        as_path = unquote(url) if url.startswith("file://") else url
        if _CONTROL.search(as_path) is not None:
            found.append(
                violation(
                    url,
                    f"{path}.modelDataUrl",
                    "Member must not contain NUL or other control characters (raw, or "
                    "percent-encoded in a file:// URL): it names a file or an object",
                )
            )
    return found


def _local_model_data_rules(
    entries: list[tuple[str, dict[str, Any]]], policy: LocalModelPolicy
) -> list[str]:
    """file:// model data only from where the server's policy allows (`local_policy`): refused
    here, before the model is stored, and again when an endpoint fetches it."""
    found: list[str] = []
    for path, container in entries:
        url = container.get("ModelDataUrl")
        if not isinstance(url, str) or not _encodable(url):
            continue
        local = file_url_path(url)
        if local is None or _CONTROL.search(str(local)) is not None:
            continue  # not a local file URL, or already reported by _model_data_rules
        reason = policy.refusal(local)
        if reason is not None:
            found.append(
                violation(
                    url,
                    f"{path}.modelDataUrl",
                    f"ModelDataUrl must name model data this server may serve to a container: "
                    f"{reason}",
                )
            )
    return found


def _pipeline_rules(entries: list[tuple[str, dict[str, Any]]], mode: str) -> list[str]:
    found: list[str] = []
    named = [
        (container["ContainerHostname"], path)
        for path, container in entries
        if isinstance(container.get("ContainerHostname"), str)
    ]
    missing = [path for path, container in entries if container.get("ContainerHostname") is None]
    if mode == "Direct":
        found += [
            violation(
                None,
                f"{path}.containerHostname",
                "Member must not be null: in Direct mode every container needs a "
                "ContainerHostname, which callers pass as TargetContainerHostname",
            )
            for path in missing
        ]
    else:
        if len(entries) < PIPELINE_MIN:
            found.append(
                f"A Serial inference pipeline needs {PIPELINE_MIN} to {PIPELINE_MAX} containers; "
                f"Containers has {len(entries)}. Give a single container as PrimaryContainer, or "
                "set InferenceExecutionConfig Mode to Direct"
            )
        if named and missing:
            found += [
                violation(
                    None,
                    f"{path}.containerHostname",
                    "Member must not be null: in a Serial inference pipeline either every "
                    "container has a ContainerHostname or none has (then they are assigned "
                    "from the position)",
                )
                for path in missing
            ]
    for hostname, paths in _duplicates(named).items():
        places = ", ".join(_plain(p) for p in paths)
        found.append(
            f"ContainerHostname '{hostname}' is given to more than one container ({places}); "
            "hostnames must be unique within a model"
        )
    return found


def endpoint_config_rules(params: dict[str, Any]) -> list[str]:
    found: list[str] = []
    variants = params.get("ProductionVariants")
    if not isinstance(variants, list):
        return found
    named: list[tuple[str, str]] = []
    dicts = [v for v in variants if isinstance(v, dict)]
    # No variant names a model: a config for inference components, whose variants are the
    # instances components are placed on. Mixing the two kinds is what SageMaker refuses.
    for_components = bool(dicts) and all(v.get("ModelName") is None for v in dicts)
    for index, variant in enumerate(variants):
        if not isinstance(variant, dict):
            continue
        path = element_path("productionVariants", index)
        if for_components:
            found += _component_variant_rules(variant, path)
        elif variant.get("ModelName") is None:
            found.append(
                violation(
                    None,
                    f"{path}.modelName",
                    "Member must not be null: a production variant serves a model, unless no "
                    "variant of the configuration names one (a configuration for inference "
                    "components)",
                )
            )
        elif variant.get("ManagedInstanceScaling") is not None:
            found.append(
                f"{_plain(path)}.ManagedInstanceScaling applies only to a variant for "
                "inference components (one without ModelName)"
            )
        name = variant.get("VariantName")
        if isinstance(name, str):
            named.append((name, path))
    for name, paths in _duplicates(named).items():
        places = ", ".join(_plain(p) for p in paths)
        found.append(
            f"VariantName '{name}' is used by more than one production variant ({places}); "
            "variant names must be unique within an endpoint configuration"
        )
    return found


def _component_variant_rules(variant: dict[str, Any], path: str) -> list[str]:
    """A variant that hosts inference components: instances of a type, a count to start with,
    and ManagedInstanceScaling's bounds in order."""
    found: list[str] = []
    for member in ("InstanceType", "InitialInstanceCount"):
        if variant.get(member) is None:
            found.append(
                violation(
                    None,
                    f"{path}.{member[0].lower()}{member[1:]}",
                    "Member must not be null: a variant for inference components needs the "
                    "instances components are placed on",
                )
            )
    scaling = variant.get("ManagedInstanceScaling")
    if isinstance(scaling, dict) and scaling.get("Status") == "ENABLED":
        low = scaling.get("MinInstanceCount")
        high = scaling.get("MaxInstanceCount")
        if not isinstance(low, int) or not isinstance(high, int):
            found.append(
                f"{_plain(path)}.ManagedInstanceScaling with Status ENABLED needs "
                "MinInstanceCount and MaxInstanceCount"
            )
        elif low > high:
            found.append(
                f"{_plain(path)}.ManagedInstanceScaling.MinInstanceCount ({low}) must not be "
                f"greater than MaxInstanceCount ({high})"
            )
    return found


def async_inference_rules(params: dict[str, Any]) -> list[str]:
    """AsyncInferenceConfig's paths: answers and failures are written with S3's API, so both
    must be s3:// URLs naming a bucket, and an answer needs somewhere to go."""
    found: list[str] = []
    config = params.get("AsyncInferenceConfig")
    if not isinstance(config, dict) or not isinstance(config.get("OutputConfig"), dict):
        return found
    output = config["OutputConfig"]
    base = "asyncInferenceConfig.outputConfig"
    if output.get("S3OutputPath") is None:
        found.append(
            violation(
                None,
                f"{base}.s3OutputPath",
                "Member must not be null: asynchronous answers are written below it",
            )
        )
    for member in ("S3OutputPath", "S3FailurePath"):
        value = output.get(member)
        if isinstance(value, str) and not _s3_url(value):
            path = f"{base}.{member[0].lower()}{member[1:]}"
            found.append(
                violation(value, path, "Member must be an s3://bucket/prefix URL (polyhost "
                          "writes asynchronous answers with S3's API)")
            )  # fmt: skip
    return found


def data_capture_rules(params: dict[str, Any]) -> list[str]:
    """DataCaptureConfig: records are written with S3's API, so DestinationS3Uri must be an
    s3:// URL naming a bucket (the model's pattern also takes https://). Only InvokeEndpoint's
    invocations are captured: a config for asynchronous inference, whose requests the queue
    runs, is refused rather than left without the capture it asks for."""
    found: list[str] = []
    config = params.get("DataCaptureConfig")
    if not isinstance(config, dict):
        return found
    destination = config.get("DestinationS3Uri")
    if isinstance(destination, str) and not _s3_url(destination):
        found.append(
            violation(destination, "dataCaptureConfig.destinationS3Uri", "Member must be an "
                      "s3://bucket/prefix URL (polyhost writes captured data with S3's API)")
        )  # fmt: skip
    if params.get("AsyncInferenceConfig") is not None:
        found.append(
            "DataCaptureConfig cannot be combined with AsyncInferenceConfig: polyhost captures "
            "InvokeEndpoint's invocations, not the asynchronous queue's; remove one of them"
        )
    return found


def shadow_variant_rules(params: dict[str, Any]) -> list[str]:
    """ShadowProductionVariants, as SageMaker takes them: one production variant and one
    shadow, each serving a model, with names unique across both lists. The shadow mirrors
    InvokeEndpoint's traffic, so it cannot go with a configuration for inference components
    (whose requests name a component) or for asynchronous inference (run by the queue)."""
    found: list[str] = []
    shadows = params.get("ShadowProductionVariants")
    if not isinstance(shadows, list) or not shadows:
        return found
    variants = params.get("ProductionVariants")
    production = variants if isinstance(variants, list) else []
    if len(production) != 1 or len(shadows) != 1:
        found.append(
            f"An endpoint configuration with ShadowProductionVariants has one production "
            f"variant and one shadow variant (this one has {len(production)} and "
            f"{len(shadows)}): a shadow gets a copy of the production variant's requests"
        )
    if any(isinstance(v, dict) and v.get("ModelName") is None for v in production):
        found.append(
            "ShadowProductionVariants cannot be combined with a configuration for inference "
            "components: give the production variant a ModelName, or remove the shadow"
        )
    if params.get("AsyncInferenceConfig") is not None:
        found.append(
            "ShadowProductionVariants cannot be combined with AsyncInferenceConfig: polyhost "
            "mirrors InvokeEndpoint's requests, not the asynchronous queue's; remove one of them"
        )
    named: list[tuple[str, str]] = []
    for index, variant in enumerate(production):
        if isinstance(variant, dict) and isinstance(variant.get("VariantName"), str):
            named.append((variant["VariantName"], element_path("productionVariants", index)))
    for index, shadow in enumerate(shadows):
        if not isinstance(shadow, dict):
            continue
        path = element_path("shadowProductionVariants", index)
        if shadow.get("ModelName") is None:
            found.append(
                violation(None, f"{path}.modelName", "Member must not be null: a shadow "
                          "variant serves a model")
            )  # fmt: skip
        if shadow.get("ManagedInstanceScaling") is not None:
            found.append(
                f"{_plain(path)}.ManagedInstanceScaling applies only to a variant for "
                "inference components, not to a shadow variant"
            )
        if isinstance(shadow.get("VariantName"), str):
            named.append((shadow["VariantName"], path))
    for name, paths in _duplicates(named).items():
        if any("shadow" in path for path in paths):
            places = ", ".join(_plain(p) for p in paths)
            found.append(
                f"VariantName '{name}' is used by more than one variant ({places}); variant "
                "names must be unique across ProductionVariants and ShadowProductionVariants"
            )
    return found


def _s3_url(value: str) -> bool:
    return value.startswith("s3://") and len(value) > 5 and not value[5:].startswith("/")


def tag_rules(params: dict[str, Any]) -> list[str]:
    found: list[str] = []
    tags = params.get("Tags")
    if not isinstance(tags, list):
        return found
    keys: list[tuple[str, str]] = []
    for index, tag in enumerate(tags):
        if not isinstance(tag, dict) or not isinstance(tag.get("Key"), str):
            continue
        key: str = tag["Key"]
        path = element_path("tags", index)
        if key.lower().startswith(RESERVED_TAG_PREFIX):
            found.append(
                violation(
                    key,
                    f"{path}.key",
                    f"Member must not start with '{RESERVED_TAG_PREFIX}', which AWS reserves",
                )
            )
        keys.append((key, path))
    seen: dict[str, list[str]] = {}
    for key, path in keys:  # tag keys are case-sensitive
        seen.setdefault(key, []).append(path)
    for key, paths in seen.items():
        if len(paths) > 1:
            places = ", ".join(_plain(p) for p in paths)
            found.append(f"Tag key '{key}' is given more than once ({places}); keys must be unique")
    return found


def weights_and_capacities_rules(params: dict[str, Any]) -> list[str]:
    """UpdateEndpointWeightsAndCapacities: each entry changes something (a weight, an instance
    count or both), names a variant no other entry names, and leaves its variant at least one
    instance (a model endpoint's variant with none would answer nothing: a weight of 0 sends
    it no traffic instead)."""
    found: list[str] = []
    entries = params.get("DesiredWeightsAndCapacities")
    if not isinstance(entries, list):
        return found
    named: list[tuple[str, str]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue
        path = element_path("desiredWeightsAndCapacities", index)
        update = entry.get("ServerlessUpdateConfig")
        if (
            entry.get("DesiredWeight") is None
            and entry.get("DesiredInstanceCount") is None
            and update is None
        ):
            found.append(
                f"{_plain(path)} gives none of DesiredWeight, DesiredInstanceCount and "
                "ServerlessUpdateConfig; give at least one"
            )
        if isinstance(update, dict) and not any(
            update.get(m) is not None for m in ("MaxConcurrency", "ProvisionedConcurrency")
        ):
            found.append(
                f"{_plain(path)}'s ServerlessUpdateConfig is empty; give MaxConcurrency, "
                "ProvisionedConcurrency or both"
            )
        if entry.get("DesiredInstanceCount") == 0:
            found.append(
                violation(
                    0,
                    f"{path}.desiredInstanceCount",
                    "Member must have value greater than or equal to 1 (a variant keeps at "
                    "least one instance; DesiredWeight 0 sends it no traffic)",
                )
            )
        name = entry.get("VariantName")
        if isinstance(name, str):
            named.append((name, path))
    seen: dict[str, list[str]] = {}
    for name, path in named:  # variant names are matched as given, so compared so
        seen.setdefault(name, []).append(path)
    for name, paths in seen.items():
        if len(paths) > 1:
            places = ", ".join(_plain(p) for p in paths)
            found.append(
                f"VariantName '{name}' is given more than once ({places}); give each variant once"
            )
    return found


SERVERLESS_MEMORY_STEP_MB = 1024


def serverless_rules(params: dict[str, Any]) -> list[str]:
    """A variant's ServerlessConfig (the model checks the ranges): instead of instances, not
    beside them; MemorySizeInMB in 1 GB steps; ProvisionedConcurrency at most MaxConcurrency;
    not for an asynchronous endpoint."""
    found: list[str] = []
    variants = params.get("ProductionVariants")
    for index, variant in enumerate(variants if isinstance(variants, list) else []):
        config = variant.get("ServerlessConfig") if isinstance(variant, dict) else None
        if not isinstance(config, dict) or not config:
            continue
        place = _plain(element_path("productionVariants", index))
        path = element_path("productionVariants", index) + ".serverlessConfig"
        given = [m for m in ("InstanceType", "InitialInstanceCount") if variant.get(m) is not None]
        if given:
            found.append(
                f"{place} gives both ServerlessConfig and {' and '.join(given)}: a serverless "
                "variant has no instances; remove "
                f"{' and '.join(given)}, or ServerlessConfig for an instance-based variant"
            )
        memory = config.get("MemorySizeInMB")
        if isinstance(memory, int) and memory % SERVERLESS_MEMORY_STEP_MB:
            found.append(
                violation(memory, f"{path}.memorySizeInMB", "Member must be a multiple of 1024 "
                          "(1024, 2048, 3072, 4096, 5120 or 6144)")
            )  # fmt: skip
        limit, provisioned = config.get("MaxConcurrency"), config.get("ProvisionedConcurrency")
        if isinstance(limit, int) and isinstance(provisioned, int) and provisioned > limit:
            found.append(
                f"{place}.ServerlessConfig.ProvisionedConcurrency ({provisioned}) must not be "
                f"greater than MaxConcurrency ({limit})"
            )
        if params.get("AsyncInferenceConfig") is not None:
            found.append(
                f"{place}.ServerlessConfig cannot be combined with AsyncInferenceConfig: "
                "remove one of them"
            )
    return found


Rule = Callable[[dict[str, Any], RuleContext], list[str]]

RULES: dict[str, Rule] = {
    "CreateModel": lambda params, context: model_rules(params, context) + tag_rules(params),
    "CreateEndpointConfig": lambda params, context: (
        endpoint_config_rules(params)
        + async_inference_rules(params)
        + data_capture_rules(params)
        + shadow_variant_rules(params)
        + serverless_rules(params)
        + tag_rules(params)
    ),
    "CreateEndpoint": lambda params, context: tag_rules(params),
    "AddTags": lambda params, context: tag_rules(params),
    "UpdateEndpointWeightsAndCapacities": lambda params, context: weights_and_capacities_rules(
        params
    ),
}
