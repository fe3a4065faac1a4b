"""deploy/kubernetes/ holds manifests Kubernetes accepts and that agree with polyhost's code.

Offline, without a cluster:
- every built-in kind is validated with kubernetes-validate against Kubernetes' own schema of a
  pinned version, strictly (an unknown field fails, as kubectl's default strict validation
  refuses it);
- the RayCluster, a custom resource, is validated against KubeRay's CRD schema (a trimmed copy
  in tests/docs/schemas/, its source noted there), and each of its pod templates against
  Kubernetes' PodTemplate schema, which the CRD embeds;
- the `polyhost serve` command of the Deployment is parsed by polyhost's own argument parser,
  so a renamed or removed flag, or a value the flag refuses, fails here;
- the names the manifests share (Secrets, the head service, labels the Service and the
  NetworkPolicies select, the container port range) are the ones the other side uses.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from polyhost.backends.ray.agent import PORT_FIRST, PORT_LAST
from polyhost.cli import build_parser
from polyhost.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
RAYCLUSTER_SCHEMA = Path(__file__).with_name("schemas") / "raycluster-v1.yaml"
CLUSTER_DOC = ROOT / "docs" / "cluster.md"
# The oldest Kubernetes the manifests are meant for: `endPort` in NetworkPolicy is GA in 1.25,
# and 1.31 is the oldest release still widely offered by managed Kubernetes services.
KUBERNETES_VERSION = "1.31.0"


def manifest_files() -> list[Path]:
    return sorted(path for path in MANIFESTS.glob("*.yaml") if path.name != "kustomization.yaml")


def documents() -> list[dict[str, Any]]:
    """Every resource of every manifest file, in file order."""
    found: list[dict[str, Any]] = []
    for path in manifest_files():
        found.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None)
    return found


def resource(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        doc
        for doc in documents()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def resource_id(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def validate_builtin(doc: dict[str, Any]) -> None:
    """kubernetes-validate's strict schema of the pinned version; its error names the field."""
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path)
        pytest.fail(f"{resource_id(doc)}: {path}: {error.message}")


BUILTIN = [doc for doc in documents() if doc["apiVersion"] != "ray.io/v1"]


@pytest.mark.parametrize("doc", BUILTIN, ids=resource_id)
def test_builtin_resource_is_valid_kubernetes(doc: dict[str, Any]) -> None:
    validate_builtin(doc)


def test_every_kind_is_validated() -> None:
    """A kind kubernetes-validate has no schema for would pass unchecked: only RayCluster may."""
    kinds = {doc["kind"] for doc in documents()}
    assert kinds == {
        "Namespace",
        "RayCluster",
        "PersistentVolumeClaim",
        "Deployment",
        "Service",
        "NetworkPolicy",
    }


def test_validation_catches_a_misspelt_field() -> None:
    """The strict schemas refuse what the API server would refuse (so the checks above bite)."""
    deployment = resource("Deployment", "polyhost")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    cluster = yaml.safe_load(yaml.safe_dump(resource("RayCluster")))
    cluster["spec"]["workerGroupSpecs"][0]["maxReplica"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cluster, yaml.safe_load(RAYCLUSTER_SCHEMA.read_text()))


# -- the RayCluster -----------------------------------------------------------------------------


def ray_pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    spec = resource("RayCluster")["spec"]
    yield "head", spec["headGroupSpec"]["template"]
    for group in spec["workerGroupSpecs"]:
        yield group["groupName"], group["template"]


def test_raycluster_matches_kuberay_crd_schema() -> None:
    schema = yaml.safe_load(RAYCLUSTER_SCHEMA.read_text())
    cluster = resource("RayCluster")
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(cluster), key=lambda e: e.path
    )
    assert not errors, "\n".join(
        f"{'.'.join(str(p) for p in error.path)}: {error.message}" for error in errors
    )


@pytest.mark.parametrize("group", [name for name, _ in ray_pod_templates()])
def test_raycluster_pod_templates_are_valid_pod_templates(group: str) -> None:
    template = dict(ray_pod_templates())[group]
    validate_builtin(
        {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"polyhost-ray-{group}"},
            "template": template,
        }
    )


def test_raycluster_workers_have_fixed_size_and_guaranteed_resources() -> None:
    """Placement counts on the nodes that exist; KubeRay gives Ray the limits as resources."""
    for group in resource("RayCluster")["spec"]["workerGroupSpecs"]:
        assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] >= 1
        container = group["template"]["spec"]["containers"][0]
        assert container["resources"]["requests"] == container["resources"]["limits"]


def test_head_offers_no_cpu_and_its_service_stays_inside() -> None:
    head = resource("RayCluster")["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["serviceType"] == "ClusterIP"


# -- the polyhost server ------------------------------------------------------------------------


def server_pod() -> dict[str, Any]:
    template: dict[str, Any] = resource("Deployment", "polyhost")["spec"]["template"]
    return template


def server_container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = server_pod()["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def serve_arguments() -> list[str]:
    """The arguments after `polyhost serve` in the container's script, with its env expanded."""
    container = server_container()
    script = "\n".join(container.get("command", []) + container.get("args", []))
    commands = [
        line for line in script.replace("\\\n", " ").splitlines() if "polyhost serve" in line
    ]
    assert len(commands) == 1, f"expected one `polyhost serve` line, found {commands}"
    words = shlex.split(commands[0])
    words = words[words.index("polyhost") + 2 :]
    values = {
        name: entry["value"] for name, entry in container_env(container).items() if "value" in entry
    }
    return [re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], word) for word in words]


def parse_serve(arguments: list[str]) -> argparse.Namespace:
    """polyhost's own parser; an unknown flag or a refused value fails with argparse's reason."""
    parser = build_parser()
    parser.exit_on_error = False
    subparsers = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    serve = subparsers.choices["serve"]
    serve.exit_on_error = False
    serve.allow_abbrev = False  # `--auth` must not pass for `--auth-file`
    try:
        namespace, unknown = serve.parse_known_args(arguments)
    except argparse.ArgumentError as error:
        pytest.fail(f"polyhost serve refuses {arguments}: {error}")
    assert not unknown, f"polyhost serve has no flag {unknown}"
    return namespace


def test_serve_command_uses_flags_polyhost_has() -> None:
    arguments = serve_arguments()
    namespace = parse_serve(arguments)
    assert namespace.backend == "ray"
    assert namespace.ray_address == "polyhost-ray-head-svc:6379"
    assert namespace.host == "0.0.0.0"
    # Off loopback `serve` refuses to start without an auth file (or --insecure, not wanted).
    assert namespace.auth_file is not None
    assert "--insecure" not in arguments
    assert namespace.admin_host == "0.0.0.0"
    assert namespace.admin_token_file is not None


def test_serve_flag_parser_refuses_an_unknown_flag() -> None:
    """The check above can fail: a flag polyhost does not have is reported."""
    with pytest.raises(AssertionError, match="no flag"):
        parse_serve(["--backend", "ray", "--ray-adress", "x:6379"])
    with pytest.raises(AssertionError, match="no flag"):
        parse_serve(["--auth", "principals.json"])
    with pytest.raises(pytest.fail.Exception, match="refuses"):
        parse_serve(["--backend", "kubernetes"])


def test_mounted_files_are_the_files_serve_reads() -> None:
    namespace = parse_serve(serve_arguments())
    mounts = {mount["name"]: mount["mountPath"] for mount in server_container()["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in server_pod()["spec"]["volumes"]}
    assert str(namespace.state_dir) == mounts["state"]
    assert volumes["state"]["persistentVolumeClaim"]["claimName"] == "polyhost-state"
    resource("PersistentVolumeClaim", "polyhost-state")
    secret_files = {
        f"{mounts['secrets']}/{item['path']}"
        for source in volumes["secrets"]["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    assert {str(namespace.auth_file), str(namespace.admin_token_file)} <= secret_files


def test_ports_and_probes_are_the_servers_defaults() -> None:
    """The command sets no --port/--admin-port, so the container serves on the defaults."""
    arguments = serve_arguments()
    assert "--port" not in arguments and "--admin-port" not in arguments
    settings = Settings()
    ports = {port["name"]: port["containerPort"] for port in server_container()["ports"]}
    assert ports == {"http": settings.port, "admin": settings.admin_port}
    for probe in ("readinessProbe", "livenessProbe"):
        assert server_container()[probe]["httpGet"] == {"path": "/ping", "port": "http"}


def test_single_server_never_two_at_once() -> None:
    spec = resource("Deployment", "polyhost")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"


def test_service_selects_the_server_pod() -> None:
    service = resource("Service", "polyhost")["spec"]
    labels = server_pod()["metadata"]["labels"]
    assert service["type"] == "ClusterIP"
    assert service["selector"].items() <= labels.items()
    assert resource("Deployment", "polyhost")["spec"]["selector"]["matchLabels"].items() <= (
        labels.items()
    )
    ports = {port["name"] for port in server_container()["ports"]}
    assert {port["targetPort"] for port in service["ports"]} == ports


# -- what the two sides share -------------------------------------------------------------------


def ray_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for group, template in ray_pod_templates():
        yield group, template["spec"]["containers"][0]
    yield "server", server_container()


def test_every_ray_node_and_the_server_run_one_image() -> None:
    """Ray needs the same Ray and Python everywhere; the agent needs polyhost on every node."""
    images = {group: container["image"] for group, container in ray_containers()}
    assert len(set(images.values())) == 1, images
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    (entry,) = kustomization["images"]
    assert next(iter(images.values())).rsplit(":", 1)[0] == entry["name"]


def test_every_ray_process_shares_one_auth_token() -> None:
    for group, container in ray_containers():
        env = container_env(container)
        assert env["RAY_AUTH_MODE"]["value"] == "token", group
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": "polyhost-ray-auth",
            "key": "auth_token",
        }, group


def test_server_joins_the_head_service_kuberay_creates() -> None:
    """KubeRay names the head's Service <cluster>-head-svc; the server's address must be it."""
    cluster = resource("RayCluster")["metadata"]["name"]
    address = container_env(server_container())["RAY_HEAD_ADDRESS"]["value"]
    assert address == f"{cluster}-head-svc:6379"
    script = "\n".join(server_container()["args"])
    assert 'ray start --address="$RAY_HEAD_ADDRESS"' in script
    assert "--num-cpus=0" in script and "--memory=0" in script


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return bool(selector["matchLabels"].items() <= labels.items())


def test_network_policies_guard_the_container_ports() -> None:
    """Container ports (the Ray agent's range) are open to the server only; Ray's ports to
    the Ray cluster's pods only; every Ray pod and the server are covered."""
    first, last = PORT_FIRST, PORT_LAST
    nodes = resource("NetworkPolicy", "polyhost-ray-nodes")["spec"]
    server_labels = server_pod()["metadata"]["labels"]
    for group, template in ray_pod_templates():
        assert selects(nodes["podSelector"], template["metadata"]["labels"]), group
    assert selects(nodes["podSelector"], server_labels)
    assert nodes["policyTypes"] == ["Ingress"]

    containers_rule, ray_rule = nodes["ingress"]
    assert [selects(peer["podSelector"], server_labels) for peer in containers_rule["from"]] == [
        True
    ]
    assert containers_rule["ports"] == [{"protocol": "TCP", "port": first, "endPort": last}]
    ray_ranges = sorted((port["port"], port["endPort"]) for port in ray_rule["ports"])
    assert ray_ranges == [(1, first - 1), (last + 1, 65535)]
    for _, template in ray_pod_templates():
        assert selects(ray_rule["from"][0]["podSelector"], template["metadata"]["labels"])

    server = resource("NetworkPolicy", "polyhost-server")["spec"]
    assert selects(server["podSelector"], server_labels)
    settings = Settings()
    assert {port["port"] for rule in server["ingress"] for port in rule["ports"]} == {
        settings.port,
        settings.admin_port,
    }


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [path.name for path in manifest_files()]
    assert kustomization["namespace"] == resource("Namespace")["metadata"]["name"]


def test_cluster_guide_walks_through_every_file() -> None:
    guide = CLUSTER_DOC.read_text()
    for name in [*(path.name for path in manifest_files()), "kustomization.yaml", "Dockerfile"]:
        assert f"deploy/kubernetes/{name}" in guide, name
    assert os.path.isfile(MANIFESTS / "Dockerfile")
