"""`polyhost ls`: one line per endpoint — name, status, creation time, config, mode, containers.

ListEndpoints gives names and statuses; the config, mode and container hostnames take a
Describe of the endpoint, its config and its models. Models and configs may have been deleted
while the endpoint keeps serving (allowed, as on SageMaker): the row then shows `-` rather than
failing the whole listing.

An endpoint for inference components shows MODE `Components` and its components as
`name(current/desired copies)`; below the endpoints a second table lists every component with
its endpoint, variant, status and copies.

When the server has Application Auto Scaling targets, a third table lists each one — resource,
dimension, MinCapacity, MaxCapacity, the capacity it runs now (the component's current copies,
the variant's current instances) and its policies' names — from DescribeScalableTargets and
DescribeScalingPolicies. A server without that service, or one refusing the calls, leaves the
table out (a refusal says so on stderr) rather than failing the listing.

`polyhost ls --instances` adds one line per running instance — endpoint, variant, instance id,
the node it runs on, its containers (a MultiModel one with the models it holds now) and
whether they are all up — read from the admin
listener's `/api/containers` (SageMaker's API has no per-instance view). The node is the Ray
node's address for the Ray backend, `local` for the process and Docker backends, and `-` when
the server does not say.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from polyhost.client.admin import AdminClient, AdminRefused, AdminUnreachable
from polyhost.client.errors import EXIT_FAILURE, CommandFailed, error_code, error_message
from polyhost.client.resources import (
    autoscaling_client,
    describe_component,
    describe_config,
    describe_endpoint,
    describe_model,
    list_components,
    list_endpoints,
    scalable_targets,
    scaling_policies,
)

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

HEADERS = ("NAME", "STATUS", "CREATED", "CONFIG", "MODE", "CONTAINERS")
COMPONENT_HEADERS = ("COMPONENT", "ENDPOINT", "VARIANT", "STATUS", "COPIES")
TARGET_HEADERS = ("RESOURCE", "DIMENSION", "MIN", "MAX", "CURRENT", "POLICIES")
# What a server answers for a service it does not serve (an older polyhost): not worth a word.
UNSERVED_CODES = frozenset({"UnknownOperationException", "404", "NotFound"})
INSTANCE_HEADERS = ("ENDPOINT", "VARIANT", "INSTANCE", "NODE", "STATUS", "CONTAINERS")


@dataclass(frozen=True)
class Row:
    name: str
    status: str
    created: str
    config: str
    mode: str
    containers: str

    def cells(self) -> tuple[str, ...]:
        return (self.name, self.status, self.created, self.config, self.mode, self.containers)


def _created(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return str(value or "-")


def _model_summary(model: dict[str, Any] | None) -> tuple[str, str]:
    """(mode, comma-separated hostnames) of a described model; `-` for a deleted one."""
    if model is None:
        return "-", "-"
    if model.get("PrimaryContainer"):
        container = model["PrimaryContainer"]
        return "Single", str(container.get("ContainerHostname") or container.get("Image", "-"))
    mode = str((model.get("InferenceExecutionConfig") or {}).get("Mode", "Serial"))
    hostnames = [str(c.get("ContainerHostname") or "?") for c in model.get("Containers") or []]
    return mode, ",".join(hostnames) or "-"


def describe_row(
    sm: SageMakerClient,
    summary: dict[str, Any],
    components: dict[str, list[dict[str, Any]]] | None = None,
) -> Row:
    """`components`: the described components of each endpoint (lowercased name)."""
    name = str(summary["EndpointName"])
    endpoint = describe_endpoint(sm, name) or {}
    config_name = str(endpoint.get("EndpointConfigName") or "-")
    config = describe_config(sm, config_name) if endpoint.get("EndpointConfigName") else None
    variants = (config or {}).get("ProductionVariants") or []
    modes: list[str] = []
    containers: list[str] = []
    hosted = (components or {}).get(name.lower(), [])
    for variant in variants:
        if not variant.get("ModelName"):
            mode = "Components"
            hostnames = (
                ",".join(
                    f"{c['InferenceComponentName']}({_copies(c)})"
                    for c in hosted
                    if c.get("VariantName") == variant.get("VariantName")
                )
                or "-"
            )
        else:
            mode, hostnames = _model_summary(describe_model(sm, str(variant.get("ModelName"))))
        modes.append(mode)
        if len(variants) > 1:
            hostnames = f"{variant.get('VariantName')}={hostnames}"
        containers.append(hostnames)
    return Row(
        name=name,
        status=str(endpoint.get("EndpointStatus") or summary.get("EndpointStatus") or "-"),
        created=_created(summary.get("CreationTime")),
        config=config_name,
        mode="/".join(dict.fromkeys(modes)) or "-",
        containers=" ".join(containers) or "-",
    )


def render(rows: list[Row]) -> str:
    """A plain, aligned text table (the last column is left unpadded)."""
    return render_table(HEADERS, [row.cells() for row in rows])


def render_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    table = [headers, *rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(headers) - 1)]
    lines = []
    for line in table:
        padded = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        lines.append("  ".join([*padded, line[-1]]).rstrip())
    return "\n".join(lines)


def _copies(component: dict[str, Any]) -> str:
    runtime = component.get("RuntimeConfig") or {}
    return f"{runtime.get('CurrentCopyCount', 0)}/{runtime.get('DesiredCopyCount', 0)}"


def list_command(
    sm: SageMakerClient, out: TextIO, scaling: Any | None = None, err: TextIO | None = None
) -> None:
    """The endpoint, component and scalable-target tables.

    `scaling`: an `application-autoscaling` client (one for `sm`'s server by default).
    """
    described = [
        d
        for summary in list_components(sm)
        if (d := describe_component(sm, str(summary["InferenceComponentName"]))) is not None
    ]
    hosted: dict[str, list[dict[str, Any]]] = {}
    for component in described:
        hosted.setdefault(str(component["EndpointName"]).lower(), []).append(component)
    rows = [describe_row(sm, summary, hosted) for summary in list_endpoints(sm)]
    if not rows:
        print("No endpoints.", file=out)
        return
    print(render(rows), file=out)
    if described:
        table: list[tuple[str, ...]] = [
            (
                str(c["InferenceComponentName"]),
                str(c["EndpointName"]),
                str(c.get("VariantName") or "-"),
                str(c.get("InferenceComponentStatus") or "-"),
                _copies(c),
            )
            for c in described
        ]
        print("", file=out)
        print(render_table(COMPONENT_HEADERS, table), file=out)
    targets = target_rows(
        scaling if scaling is not None else autoscaling_client(sm),
        lambda resource_id: _current_capacity(sm, resource_id, described),
        err if err is not None else sys.stderr,
    )
    if targets:
        print("", file=out)
        print(render_table(TARGET_HEADERS, targets), file=out)


def target_rows(scaling: Any, current: Callable[[str], str], err: TextIO) -> list[tuple[str, ...]]:
    """One row per scalable target; none when the server does not serve or refuses the calls."""
    try:
        targets = scalable_targets(scaling)
        policies = scaling_policies(scaling) if targets else []
    except ClientError as error:
        if error_code(error) not in UNSERVED_CODES:
            print(
                f"scalable targets not shown: {error_code(error)}: {error_message(error)}",
                file=err,
            )
        return []
    except BotoCoreError as error:
        print(f"scalable targets not shown: {error}", file=err)
        return []
    named: dict[tuple[str, str], list[str]] = {}
    for policy in policies:
        key = (str(policy.get("ResourceId")), str(policy.get("ScalableDimension")))
        named.setdefault(key, []).append(str(policy.get("PolicyName")))
    return [
        (
            str(t["ResourceId"]),
            str(t["ScalableDimension"]),
            str(t.get("MinCapacity", "-")),
            str(t.get("MaxCapacity", "-")),
            current(str(t["ResourceId"])),
            ",".join(sorted(named.get((t["ResourceId"], t["ScalableDimension"]), []))) or "-",
        )
        for t in targets
    ]


def _current_capacity(
    sm: SageMakerClient, resource_id: str, components: list[dict[str, Any]]
) -> str:
    """The capacity a target's resource runs now: current copies or current instances."""
    parts = resource_id.split("/")
    if len(parts) == 2 and parts[0] == "inference-component":
        for component in components:
            if component.get("InferenceComponentName") == parts[1]:
                runtime = component.get("RuntimeConfig") or {}
                return str(runtime.get("CurrentCopyCount", "-"))
        return "-"
    if len(parts) == 4 and parts[0] == "endpoint" and parts[2] == "variant":
        endpoint = describe_endpoint(sm, parts[1]) or {}
        for variant in endpoint.get("ProductionVariants") or []:
            if variant.get("VariantName") == parts[3]:
                return str(variant.get("CurrentInstanceCount", "-"))
    return "-"


def instance_rows(containers: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    """One row per (endpoint, variant, instance) of the admin API's container list."""
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for container in containers:
        key = (
            str(container.get("endpoint", "-")),
            str(container.get("variant", "-")),
            str(container.get("instance", "-")),
        )
        grouped.setdefault(key, []).append(container)
    rows: list[tuple[str, ...]] = []
    for key in sorted(grouped):
        members = grouped[key]
        nodes = sorted({_node(c) for c in members})
        up = sum(1 for c in members if c.get("up"))
        status = "up" if up == len(members) else f"down ({up}/{len(members)} up)"
        hostnames = ",".join(sorted(_hostname(c) for c in members))
        rows.append((*key, "/".join(nodes), status, hostnames))
    return rows


def _hostname(container: dict[str, Any]) -> str:
    """The container's hostname; a MultiModel one's with the models it holds now."""
    name = str(container.get("hostname", "?"))
    loaded = container.get("loaded_models")
    return name if loaded is None else f"{name}(models={loaded})"


def _node(container: dict[str, Any]) -> str:
    if "node" not in container:
        return "-"
    node = container["node"]
    return "local" if node is None else str(node)


def list_instances(admin: AdminClient, out: TextIO) -> None:
    """The instance table (`ls --instances`), from the admin listener."""
    try:
        answer = admin.get_json("/api/containers")
    except AdminUnreachable as error:
        raise CommandFailed(
            f"cannot reach the admin listener at {admin.url} for --instances: is `polyhost "
            f"serve` running with --admin-port? ({error})"
        ) from None
    except AdminRefused as error:
        raise CommandFailed(f"{admin.url} refused: {error.message}", EXIT_FAILURE) from None
    rows = instance_rows(list(answer.get("containers") or []))
    if not rows:
        print("No running instances.", file=out)
        return
    print(render_table(INSTANCE_HEADERS, rows), file=out)
