"""The declarative file of `polyhost deploy`: one YAML document → CreateModel /
CreateEndpointConfig / CreateEndpoint parameters.

The keys are boto3's parameter names in snake_case, so a SageMaker user reads the file as the
calls it stands for:

    endpoint: mnist                       # EndpointName
    endpoint_config: mnist-config         # optional, default "<endpoint>-config"
    tags: {team: vision}                  # optional; on every resource created
    model:                                # or `models:` — a list, one model per variant
      name: mnist-multi                   # optional, default "<endpoint>-model"
      mode: Direct                        # InferenceExecutionConfig.Mode (Serial | Direct)
      execution_role_arn: arn:...         # optional
      containers:                         # or image/model_data_url/environment/hostname
        - hostname: pytorch-mnist         #   directly under `model:` for one container
          image: polyhost/pytorch
          model_data_url: file://./models/pytorch.tar.gz
          environment: {SAGEMAKER_PROGRAM: inference.py}
    variants:                             # optional: one AllTraffic variant, 1 instance
      - name: AllTraffic
        model: mnist-multi                # which model; optional when there is one
        instance_count: 1
        weight: 1
        instance_type: ml.m5.large        # optional
        startup_timeout: 240              # ContainerStartupHealthCheckTimeoutInSeconds
        download_timeout: 600             # ModelDataDownloadTimeoutInSeconds

An endpoint for inference components has variants without a model (instance type and count,
optional `routing:` and `managed_scaling:`) and a `components:` list; `models:` is then
optional, for components that name one:

    endpoint: shared
    variants:
      - name: AllTraffic
        instance_type: ml.m5.xlarge
        instance_count: 2
        routing: LEAST_OUTSTANDING_REQUESTS   # RoutingConfig.RoutingStrategy (or RANDOM)
        managed_scaling: {min: 1, max: 4}     # ManagedInstanceScaling, ENABLED
    components:
      - name: digits                          # InferenceComponentName
        model: digits-model                   # a model of this file, or inline image: ...
        copies: 2                             # RuntimeConfig.CopyCount
        cpus: 1                               # NumberOfCpuCoresRequired
        memory_mb: 1024                       # MinMemoryRequiredInMb
        max_memory_mb: 2048                   # MaxMemoryRequiredInMb (optional)

Only the file's structure is checked here (unknown keys, types), so a typo is caught before any
call; names, lengths and limits are the server's to check, and its messages are printed as
they come. A relative `file://` URL (or a plain path) is resolved against the file's folder,
because the server, not the shell, opens it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

NAME_MAX = 63
HASH_CHARS = 8

_TOP_KEYS = (
    "endpoint",
    "endpoint_config",
    "tags",
    "model",
    "models",
    "variants",
    "components",
)
_MODEL_KEYS = ("name", "mode", "execution_role_arn", "containers")
_CONTAINER_KEYS = ("hostname", "image", "model_data_url", "environment")
_VARIANT_KEYS = (
    "name",
    "model",
    "instance_count",
    "weight",
    "instance_type",
    "startup_timeout",
    "download_timeout",
    "routing",
    "managed_scaling",
)
_COMPONENT_KEYS = (
    "name",
    "variant",
    "model",
    "copies",
    "cpus",
    "memory_mb",
    "max_memory_mb",
    "startup_timeout",
    "download_timeout",
    *("image", "model_data_url", "environment"),
)
_MODES = ("Serial", "Direct")


class SpecError(Exception):
    """The file cannot describe an endpoint; the message names the key and what to write."""


@dataclass(frozen=True)
class ModelSpec:
    """One model: its preferred name and its CreateModel parameters (without name and tags)."""

    name: str
    params: dict[str, Any]


@dataclass(frozen=True)
class VariantSpec:
    """One production variant; `model` is the preferred name of one of the file's models."""

    name: str
    model: str
    params: dict[str, Any]


@dataclass(frozen=True)
class ComponentSpec:
    """One inference component: its name, the file's model it runs (None: an inline
    container in `specification`), and its CreateInferenceComponent parameters."""

    name: str
    variant: str
    model: str | None
    specification: dict[str, Any]
    copies: int


@dataclass(frozen=True)
class Deployment:
    endpoint: str
    config_name: str
    models: tuple[ModelSpec, ...]
    variants: tuple[VariantSpec, ...]
    tags: tuple[dict[str, str], ...] = ()
    components: tuple[ComponentSpec, ...] = ()

    def config_params(self, model_names: dict[str, str]) -> dict[str, Any]:
        """CreateEndpointConfig's ProductionVariants, with the model names actually used (a
        variant for components names none)."""
        return {
            "ProductionVariants": [
                {
                    "VariantName": v.name,
                    **({"ModelName": model_names[v.model]} if v.model else {}),
                    **v.params,
                }
                for v in self.variants
            ]
        }

    def component_specification(
        self, component: ComponentSpec, model_names: dict[str, str]
    ) -> dict[str, Any]:
        """The component's Specification, naming the model as actually created."""
        if component.model is None:
            return component.specification
        return {**component.specification, "ModelName": model_names[component.model]}


def content_hash(params: dict[str, Any]) -> str:
    """A short, stable digest of a resource definition, used to name a changed one."""
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_CHARS]


def suffixed(name: str, digest: str) -> str:
    """`name-digest`, the name cut so the result stays within SageMaker's 63 characters."""
    room = NAME_MAX - len(digest) - 1
    return f"{name[:room].rstrip('-')}-{digest}"


def load(path: Path) -> Deployment:
    """Read and check a deployment file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise SpecError(f"{path} is not valid YAML: {error}") from None
    return parse(document, base_dir=path.resolve().parent)


def parse(document: object, base_dir: Path) -> Deployment:
    """Turn a loaded YAML document into a Deployment (relative paths against `base_dir`)."""
    top = _mapping(document, "the file", _TOP_KEYS)
    endpoint = _required(top.get("endpoint"), "endpoint")
    config_name = _string(top.get("endpoint_config"), "endpoint_config") or f"{endpoint}-config"
    tags = tuple(
        {"Key": key, "Value": value} for key, value in _string_map(top.get("tags"), "tags").items()
    )
    if "components" in top:
        return _components_deployment(top, endpoint, config_name, tags, base_dir)
    models = _models(top, endpoint, base_dir)
    variants = _variants(top.get("variants"), models)
    used = {v.model for v in variants}
    unused = [m.name for m in models if m.name not in used]
    if unused:
        raise SpecError(f"model(s) {', '.join(unused)} are used by no variant; remove them")
    return Deployment(endpoint, config_name, models, variants, tags)


def _components_deployment(
    top: dict[str, Any],
    endpoint: str,
    config_name: str,
    tags: tuple[dict[str, str], ...],
    base_dir: Path,
) -> Deployment:
    """An endpoint for inference components: variants without models, then the components."""
    models = _models(top, endpoint, base_dir) if ("model" in top or "models" in top) else ()
    raw = top.get("variants")
    if raw is None:
        raise SpecError(
            "variants: required with components — the instances they are placed on "
            "(name, instance_type, instance_count)"
        )
    if not isinstance(raw, list) or not raw:
        raise SpecError("variants: must be a non-empty list of variants")
    variants = []
    for i, item in enumerate(raw):
        where = f"variants[{i}]"
        variant = _mapping(item, where, _VARIANT_KEYS)
        if "model" in variant:
            raise SpecError(
                f"{where}.model: a variant for components names no model; the components "
                "say which model each runs"
            )
        name = _required(variant.get("name"), f"{where}.name")
        params = _variant_params(variant, where)
        params.pop("InitialVariantWeight", None)
        _required(variant.get("instance_type"), f"{where}.instance_type")
        variants.append(VariantSpec(name, "", params))
    items = top["components"]
    if not isinstance(items, list) or not items:
        raise SpecError("components: must be a non-empty list of inference components")
    names = [m.name for m in models]
    components = tuple(
        _component(item, f"components[{i}]", variants[0].name, names, base_dir)
        for i, item in enumerate(items)
    )
    unused = [n for n in names if n not in {c.model for c in components}]
    if unused:
        raise SpecError(f"model(s) {', '.join(unused)} are used by no component; remove them")
    return Deployment(endpoint, config_name, models, tuple(variants), tags, components)


def _component(
    raw: object, where: str, default_variant: str, models: list[str], base_dir: Path
) -> ComponentSpec:
    item = _mapping(raw, where, _COMPONENT_KEYS)
    name = _required(item.get("name"), f"{where}.name")
    model = _string(item.get("model"), f"{where}.model")
    inline = [k for k in ("image", "model_data_url", "environment") if k in item]
    specification: dict[str, Any] = {}
    if model is not None:
        if inline:
            raise SpecError(f"{where}: give `model:` or an inline `image:`, not both")
        if model not in models:
            raise SpecError(
                f"{where}.model: {model!r} is not a model of this file "
                f"({', '.join(models) or 'it has none'})"
            )
    elif "image" not in item:
        raise SpecError(f"{where}: needs `model:` (a model of this file) or an inline `image:`")
    else:
        container: dict[str, Any] = {"Image": _required(item["image"], f"{where}.image")}
        url = _string(item.get("model_data_url"), f"{where}.model_data_url")
        if url is not None:
            container["ArtifactUrl"] = resolve_model_data_url(url, base_dir)
        if "environment" in item:
            container["Environment"] = _string_map(item["environment"], f"{where}.environment")
        specification["Container"] = container
    compute: dict[str, Any] = {
        "MinMemoryRequiredInMb": _integer(item.get("memory_mb", 1024), f"{where}.memory_mb")
    }
    if "cpus" in item:
        compute["NumberOfCpuCoresRequired"] = _number(item["cpus"], f"{where}.cpus")
    if "max_memory_mb" in item:
        compute["MaxMemoryRequiredInMb"] = _integer(item["max_memory_mb"], f"{where}.max_memory_mb")
    specification["ComputeResourceRequirements"] = compute
    startup: dict[str, Any] = {}
    for key, member in (
        ("startup_timeout", "ContainerStartupHealthCheckTimeoutInSeconds"),
        ("download_timeout", "ModelDataDownloadTimeoutInSeconds"),
    ):
        if key in item:
            startup[member] = _integer(item[key], f"{where}.{key}")
    if startup:
        specification["StartupParameters"] = startup
    variant = _string(item.get("variant"), f"{where}.variant") or default_variant
    copies = _integer(item.get("copies", 1), f"{where}.copies")
    return ComponentSpec(name, variant, model, specification, copies)


def _models(top: dict[str, Any], endpoint: str, base_dir: Path) -> tuple[ModelSpec, ...]:
    if ("model" in top) == ("models" in top):
        raise SpecError("give either `model:` (one model) or `models:` (a list), not both/neither")
    if "model" in top:
        return (_model(top["model"], "model", f"{endpoint}-model", base_dir),)
    raw = top["models"]
    if not isinstance(raw, list) or not raw:
        raise SpecError("models: must be a non-empty list of models")
    models = tuple(_model(item, f"models[{i}]", None, base_dir) for i, item in enumerate(raw))
    names = [m.name for m in models]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SpecError(f"models: the name(s) {', '.join(duplicates)} appear more than once")
    return models


def _model(raw: object, where: str, default_name: str | None, base_dir: Path) -> ModelSpec:
    keys = _MODEL_KEYS + _CONTAINER_KEYS
    model = _mapping(raw, where, keys)
    name = _string(model.get("name"), f"{where}.name", required=default_name is None)
    inline = [k for k in _CONTAINER_KEYS if k in model]
    if inline and "containers" in model:
        raise SpecError(
            f"{where}: put {', '.join(inline)} inside `containers:` or drop `containers:` — "
            "a model is either one container written inline or a list of containers"
        )
    if "containers" in model:
        items = model["containers"]
        if not isinstance(items, list) or not items:
            raise SpecError(f"{where}.containers: must be a non-empty list of containers")
        containers = [
            _container(item, f"{where}.containers[{i}]", base_dir) for i, item in enumerate(items)
        ]
    elif inline:
        containers = [_container({k: model[k] for k in inline}, where, base_dir)]
    else:
        raise SpecError(f"{where}: needs `containers:` or an inline `image:`")
    mode = _string(model.get("mode"), f"{where}.mode")
    if mode is not None and mode not in _MODES:
        raise SpecError(f"{where}.mode: must be Serial or Direct, not {mode!r}")
    params: dict[str, Any] = {}
    # One container and no mode is what SageMaker calls a PrimaryContainer model.
    if len(containers) == 1 and mode is None:
        params["PrimaryContainer"] = containers[0]
    else:
        params["Containers"] = containers
    if mode is not None:
        params["InferenceExecutionConfig"] = {"Mode": mode}
    role = _string(model.get("execution_role_arn"), f"{where}.execution_role_arn")
    if role is not None:
        params["ExecutionRoleArn"] = role
    return ModelSpec(name or str(default_name), params)


def _container(raw: object, where: str, base_dir: Path) -> dict[str, Any]:
    container = _mapping(raw, where, _CONTAINER_KEYS)
    definition: dict[str, Any] = {}
    hostname = _string(container.get("hostname"), f"{where}.hostname")
    if hostname is not None:
        definition["ContainerHostname"] = hostname
    definition["Image"] = _required(container.get("image"), f"{where}.image")
    url = _string(container.get("model_data_url"), f"{where}.model_data_url")
    if url is not None:
        definition["ModelDataUrl"] = resolve_model_data_url(url, base_dir)
    if "environment" in container:
        definition["Environment"] = _string_map(container["environment"], f"{where}.environment")
    return definition


def resolve_model_data_url(url: str, base_dir: Path) -> str:
    """`file://./x`, `file://x` and plain paths become absolute `file://` URLs; others stay."""
    if url.startswith("file://"):
        rest = url[len("file://") :]
        if rest.startswith("/"):
            return url
        return (base_dir / rest).resolve().as_uri()
    if "://" in url:
        return url
    return (base_dir / Path(url).expanduser()).resolve().as_uri()


def _variants(raw: object, models: tuple[ModelSpec, ...]) -> tuple[VariantSpec, ...]:
    names = [m.name for m in models]
    if raw is None:
        if len(models) > 1:
            raise SpecError("variants: required with several models — one variant per model")
        return (VariantSpec("AllTraffic", names[0], _variant_params({}, "variants")),)
    if not isinstance(raw, list) or not raw:
        raise SpecError("variants: must be a non-empty list of variants")
    variants = []
    for i, item in enumerate(raw):
        where = f"variants[{i}]"
        variant = _mapping(item, where, _VARIANT_KEYS)
        name = _required(variant.get("name"), f"{where}.name")
        model = _string(variant.get("model"), f"{where}.model")
        if model is None:
            if len(models) > 1:
                raise SpecError(f"{where}.model: required with several models ({', '.join(names)})")
            model = names[0]
        elif model not in names:
            raise SpecError(
                f"{where}.model: {model!r} is not a model of this file ({', '.join(names)})"
            )
        variants.append(VariantSpec(name, model, _variant_params(variant, where)))
    return tuple(variants)


def _variant_params(variant: dict[str, Any], where: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "InitialInstanceCount": _integer(
            variant.get("instance_count", 1), f"{where}.instance_count"
        ),
        "InitialVariantWeight": _number(variant.get("weight", 1), f"{where}.weight"),
    }
    instance_type = _string(variant.get("instance_type"), f"{where}.instance_type")
    if instance_type is not None:
        params["InstanceType"] = instance_type
    for key, member in (
        ("startup_timeout", "ContainerStartupHealthCheckTimeoutInSeconds"),
        ("download_timeout", "ModelDataDownloadTimeoutInSeconds"),
    ):
        if key in variant:
            params[member] = _integer(variant[key], f"{where}.{key}")
    routing = _string(variant.get("routing"), f"{where}.routing")
    if routing is not None:
        params["RoutingConfig"] = {"RoutingStrategy": routing}
    if "managed_scaling" in variant:
        bounds = _mapping(variant["managed_scaling"], f"{where}.managed_scaling", ("min", "max"))
        params["ManagedInstanceScaling"] = {
            "Status": "ENABLED",
            "MinInstanceCount": _integer(bounds.get("min", 1), f"{where}.managed_scaling.min"),
            "MaxInstanceCount": _integer(bounds.get("max", 1), f"{where}.managed_scaling.max"),
        }
    return params


# -- small typed readers: each names the key it complains about ----------------------------------


def _mapping(raw: object, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: must be a mapping of keys to values")
    unknown = sorted(str(k) for k in raw if k not in allowed)
    if unknown:
        raise SpecError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(allowed)}"
        )
    return {str(k): v for k, v in raw.items()}


def _string(raw: object, where: str, required: bool = False) -> str | None:
    if raw is None:
        if required:
            raise SpecError(f"{where}: required")
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        raise SpecError(f"{where}: must be a string, not {type(raw).__name__}")
    return str(raw)


def _required(raw: object, where: str) -> str:
    value = _string(raw, where, required=True)
    assert value is not None
    return value


def _scalar_text(raw: object, where: str) -> str:
    """An Environment/Tags value: YAML's `true`, `8`, `0.5` become the text a user meant."""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, str | int | float):
        return str(raw)
    if raw is None:
        return ""
    raise SpecError(f"{where}: must be a string, not {type(raw).__name__}")


def _string_map(raw: object, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: must be a mapping of names to strings")
    return {str(k): _scalar_text(v, f"{where}.{k}") for k, v in raw.items()}


def _integer(raw: object, where: str) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise SpecError(f"{where}: must be a whole number, not {raw!r}")
    return raw


def _number(raw: object, where: str) -> float | int:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise SpecError(f"{where}: must be a number, not {raw!r}")
    return raw
