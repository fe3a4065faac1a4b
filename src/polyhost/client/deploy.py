"""`polyhost deploy FILE`: make the server run what the file describes, and wait for it.

Idempotent, so running it again is always safe:
- a model (or endpoint config) that exists with the same definition is reused;
- one that exists under the wanted name but differs is left alone (a running endpoint may use
  it) and the new definition is created as `<name>-<content hash>` — running the same file
  twice therefore lands on the same names, and so does going back to an earlier file;
- an endpoint already serving the wanted config is only waited for; one serving another
  config gets UpdateEndpoint (blue/green on the server), one that does not exist is created.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from botocore.exceptions import ClientError

from polyhost.client.errors import CommandFailed, is_already_existing
from polyhost.client.resources import (
    describe_component,
    describe_config,
    describe_endpoint,
    describe_model,
)
from polyhost.client.spec import ComponentSpec, Deployment, content_hash, suffixed
from polyhost.client.wait import (
    TRANSITIONS,
    Poller,
    wait_component,
    wait_in_service,
    wait_settled,
)

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient


# -- comparing what the file wants with what the server describes --------------------------------


def _containers(params: dict[str, Any]) -> list[dict[str, Any]]:
    if params.get("PrimaryContainer"):
        return [params["PrimaryContainer"]]
    return list(params.get("Containers") or [])


def model_matches(wanted: dict[str, Any], described: dict[str, Any]) -> bool:
    """Whether a described model is what `wanted` (CreateModel parameters) would create.

    Hostnames the file leaves out (a Serial pipeline) are assigned by the server, and a role
    the file leaves out may be filled in, so only what the file states is compared.
    """
    if bool(wanted.get("PrimaryContainer")) != bool(described.get("PrimaryContainer")):
        return False
    mode = (wanted.get("InferenceExecutionConfig") or {}).get("Mode", "Serial")
    if (described.get("InferenceExecutionConfig") or {}).get("Mode", "Serial") != mode:
        return False
    if (
        "ExecutionRoleArn" in wanted
        and described.get("ExecutionRoleArn") != wanted["ExecutionRoleArn"]
    ):
        return False
    mine, theirs = _containers(wanted), _containers(described)
    if len(mine) != len(theirs):
        return False
    for a, b in zip(mine, theirs, strict=True):
        if a.get("Image") != b.get("Image") or a.get("ModelDataUrl") != b.get("ModelDataUrl"):
            return False
        if (a.get("Environment") or {}) != (b.get("Environment") or {}):
            return False
        if "ContainerHostname" in a and a["ContainerHostname"] != b.get("ContainerHostname"):
            return False
    return True


def specification_matches(wanted: dict[str, Any], described: dict[str, Any]) -> bool:
    """Whether a component's described Specification is what the file asks (only what the
    file states is compared; Describe shows an inline container as its deployed image)."""
    if wanted.get("ModelName") != described.get("ModelName"):
        return False
    if wanted.get("ComputeResourceRequirements") != described.get("ComputeResourceRequirements"):
        return False
    if (wanted.get("StartupParameters") or {}) != (described.get("StartupParameters") or {}):
        return False
    container = wanted.get("Container")
    if container is None:
        return described.get("Container") is None
    shown = described.get("Container") or {}
    return (
        container["Image"] == (shown.get("DeployedImage") or {}).get("SpecifiedImage")
        and container.get("ArtifactUrl") == shown.get("ArtifactUrl")
        and (container.get("Environment") or {}) == (shown.get("Environment") or {})
    )


def config_matches(wanted: dict[str, Any], described: dict[str, Any]) -> bool:
    """Whether a described endpoint config has the variants of `wanted`, member by member.

    Members the file leaves out are not compared (the server may fill in defaults), so
    deleting e.g. `instance_type:` from the file is not by itself a change.
    """
    mine = wanted["ProductionVariants"]
    theirs = described.get("ProductionVariants") or []
    if len(mine) != len(theirs):
        return False
    for a, b in zip(mine, theirs, strict=True):
        for key, value in a.items():
            other = b.get(key)
            if isinstance(value, int | float) and isinstance(other, int | float):
                if float(value) != float(other):
                    return False
            elif value != other:
                return False
    return True


# -- ensuring each resource ------------------------------------------------------------------------


@dataclass
class Deployer:
    """Walks a Deployment through the server: models, endpoint config, endpoint, then waits."""

    sm: SageMakerClient
    out: TextIO
    timeout_s: float = 900.0
    wait: bool = True

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def run(self, deployment: Deployment) -> str:
        """Deploy; returns the endpoint's final status. Raises CommandFailed when it fails."""
        tags: dict[str, Any] = {"Tags": [dict(tag) for tag in deployment.tags]}
        names: dict[str, str] = {}
        for model in deployment.models:
            names[model.name] = self._ensure(
                "model",
                model.name,
                model.params,
                lambda name: describe_model(self.sm, name),
                lambda name, params: self.sm.create_model(ModelName=name, **tags, **params),
                model_matches,
            )
        config_params = deployment.config_params(names)
        config_name = self._ensure(
            "endpoint config",
            deployment.config_name,
            config_params,
            lambda name: describe_config(self.sm, name),
            lambda name, params: self.sm.create_endpoint_config(
                EndpointConfigName=name, **tags, **params
            ),
            config_matches,
        )
        status = self._ensure_endpoint(deployment.endpoint, config_name, tags)
        for component in deployment.components:
            self._ensure_component(deployment, component, names, tags)
        return status

    def _ensure_component(
        self,
        deployment: Deployment,
        component: ComponentSpec,
        model_names: dict[str, str],
        tags: dict[str, Any],
    ) -> None:
        """Create the component, or change what differs (the copies alone, or the
        specification), then wait for it, as for the endpoint."""
        name = component.name
        specification = deployment.component_specification(component, model_names)
        described = describe_component(self.sm, name)
        if described is None:
            self.sm.create_inference_component(
                InferenceComponentName=name,
                EndpointName=deployment.endpoint,
                VariantName=component.variant,
                Specification=specification,  # type: ignore[arg-type]
                RuntimeConfig={"CopyCount": component.copies},
                **tags,
            )
            self.say(f"inference component {name}: creating with {component.copies} copies")
        elif not specification_matches(specification, described.get("Specification") or {}):
            self.sm.update_inference_component(
                InferenceComponentName=name,
                Specification=specification,  # type: ignore[arg-type]
                RuntimeConfig={"CopyCount": component.copies},
            )
            self.say(f"inference component {name}: updating its specification")
        elif described["RuntimeConfig"]["DesiredCopyCount"] != component.copies:
            self.sm.update_inference_component_runtime_config(
                InferenceComponentName=name,
                DesiredRuntimeConfig={"CopyCount": component.copies},
            )
            self.say(
                f"inference component {name}: from "
                f"{described['RuntimeConfig']['DesiredCopyCount']} to {component.copies} copies"
            )
        else:
            self.say(f"inference component {name}: unchanged")
        if not self.wait:
            return
        final = wait_component(self.sm, name, Poller(self.timeout_s))
        copies = final["RuntimeConfig"]
        reason = final.get("FailureReason")
        if final["InferenceComponentStatus"] == "Failed":
            raise CommandFailed(
                f"inference component {name} is Failed.\nFailureReason: {reason or '(none)'}"
            )
        self.say(
            f"inference component {name} is {final['InferenceComponentStatus']} with "
            f"{copies['CurrentCopyCount']} of {copies['DesiredCopyCount']} copies"
            + (f" ({reason})" if reason else "")
        )

    def _ensure(
        self,
        kind: str,
        name: str,
        params: dict[str, Any],
        describe: Callable[[str], dict[str, Any] | None],
        create: Callable[[str, dict[str, Any]], object],
        matches: Callable[[dict[str, Any], dict[str, Any]], bool],
    ) -> str:
        described = describe(name)
        if described is not None and matches(params, described):
            self.say(f"{kind} {name}: unchanged")
            return name
        if described is not None:
            changed = suffixed(name, content_hash(params))
            self.say(f"{kind} {name} exists with another definition; this file's is {changed}")
            name = changed
            described = describe(name)
            if described is not None:
                self.say(f"{kind} {name}: unchanged")
                return name
        try:
            create(name, params)
        except ClientError as error:
            if not is_already_existing(error):
                raise
            # Another deploy of the same file created it meanwhile; the name says the content.
            self.say(f"{kind} {name}: created meanwhile by someone else, using it")
            return name
        self.say(f"{kind} {name}: created")
        return name

    def _ensure_endpoint(self, name: str, config_name: str, tags: dict[str, Any]) -> str:
        poller = Poller(self.timeout_s)
        endpoint = describe_endpoint(self.sm, name)
        status = endpoint.get("EndpointStatus") if endpoint is not None else None
        serving = endpoint.get("EndpointConfigName") if endpoint is not None else None
        if status == "Deleting" or (status in TRANSITIONS and serving != config_name):
            # The server takes one change at a time: let the running one finish first.
            self.say(f"endpoint {name}: {status}, waiting for it to settle")
            endpoint = wait_settled(self.sm, name, poller)
        if endpoint is None:
            self.sm.create_endpoint(EndpointName=name, EndpointConfigName=config_name, **tags)
            self.say(f"endpoint {name}: creating with {config_name}")
        elif endpoint.get("EndpointConfigName") == config_name:
            if endpoint.get("EndpointStatus") == "Failed":
                raise CommandFailed(
                    f"endpoint {name} is Failed with {config_name}.\n"
                    f"FailureReason: {endpoint.get('FailureReason') or '(none given)'}\n"
                    f"Fix the file and deploy again, or `polyhost rm {name}` and deploy again."
                )
            self.say(f"endpoint {name}: already uses {config_name}")
        else:
            self.sm.update_endpoint(EndpointName=name, EndpointConfigName=config_name)
            self.say(
                f"endpoint {name}: updating from {endpoint.get('EndpointConfigName')} "
                f"to {config_name}"
            )
        if not self.wait:
            return str((describe_endpoint(self.sm, name) or {}).get("EndpointStatus", "?"))
        final = wait_in_service(self.sm, name, config_name, poller, self.out)
        self.say(f"endpoint {name} is InService")
        return str(final["EndpointStatus"])
