"""Tenants' Docker containers stay apart too: a pause container's network per instance.

The Docker counterpart of `test_tenant_isolation.py`: a real server with `--backend docker`
and `--auth-file`, and the prober container (`tests/support/containers/prober.py`) built into
an image without a USER line. Before isolation its containers ran on the host's network, as
root: they reached another endpoint's container port and the admin listener directly.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polyhost.backends.docker.build import follow
from polyhost.backends.docker.images import ACCEPT_BIND_TO_PORT
from tests.reliability.test_tenant_isolation import PRINCIPALS, client, refused
from tests.support.docker import client_or_skip, docker_server, ensure_images, labelled
from tests.support.docker_images import BYO_IMAGE
from tests.support.endpoints import create_config, create_model, wait_status
from tests.support.server import CONTAINERS, PolyhostProcess

PROBER_IMAGE = "polyhost-test/prober-docker:1"
# On the tests' bring-your-own image, which has python3 (the bare base image may not).
DOCKERFILE = f"""\
FROM {BYO_IMAGE}
COPY prober.py /opt/prober.py
ENTRYPOINT ["python3", "/opt/prober.py"]
"""


@pytest.fixture(scope="module")
def daemon() -> Any:
    docker = client_or_skip()
    ensure_images()
    context = Path(tempfile.mkdtemp(prefix="polyhost-prober-image-"))
    try:
        shutil.copy(CONTAINERS / "prober.py", context / "prober.py")
        (context / "Dockerfile").write_text(DOCKERFILE, encoding="utf-8")
        stream = docker.api.build(
            path=str(context),
            tag=PROBER_IMAGE,
            labels={ACCEPT_BIND_TO_PORT: "true"},
            network_mode="host",
            rm=True,
            pull=False,
            decode=True,
        )
        follow(stream, io.StringIO().write, PROBER_IMAGE)
    finally:
        shutil.rmtree(context, ignore_errors=True)
    return docker


def ask(server: PolyhostProcess, endpoint: str, attempts: dict[str, Any] | None = None,
        target: str | None = None) -> dict[str, Any]:  # fmt: skip
    extra = {} if target is None else {"TargetContainerHostname": target}
    answer = client(server, "sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint, Body=json.dumps(attempts or {}).encode(), **extra
    )
    report: dict[str, Any] = json.loads(answer["Body"].read())
    return report


@pytest.fixture(scope="module")
def shared(daemon: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolyhostProcess]:
    base = tmp_path_factory.mktemp("isolation-docker")
    auth = base / "principals.json"
    auth.write_text(json.dumps(PRINCIPALS), encoding="utf-8")
    proc = docker_server(base / "state", "--auth-file", str(auth)).start()
    sagemaker = client(proc, "sagemaker")
    prober = {"Image": PROBER_IMAGE}
    create_model(
        sagemaker,
        "guide",
        [
            {**prober, "ContainerHostname": "customIps1"},
            {**prober, "ContainerHostname": "special1"},
        ],
        mode="Direct",
    )
    create_model(sagemaker, "other", [prober])
    for name in ("guide", "other"):
        create_config(sagemaker, name, [("AllTraffic", name, 1, 1.0)])
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    for name in ("guide", "other"):
        assert wait_status(sagemaker, name, timeout=120)["EndpointStatus"] == "InService"
    yield proc
    proc.stop()
    assert labelled(daemon, base / "state") == []  # containers and pause containers gone


def test_docker_containers_are_isolated(shared: PolyhostProcess) -> None:
    special = ask(shared, "guide", target="special1")
    other = ask(shared, "other")
    # Not root: the image names no USER.
    assert special["uid"] == other["uid"] == 65534
    # Another endpoint's container and the admin listener are out of reach...
    from_other = ask(shared, "other", {"post": [["127.0.0.1", special["port"]]],
                                       "get": [f"{shared.admin_url}/metrics"]})  # fmt: skip
    assert refused(from_other["post"][f"127.0.0.1:{special['port']}"]), from_other
    assert refused(from_other["get"][f"{shared.admin_url}/metrics"]), from_other
    # ... while the containers of one instance reach each other on loopback.
    sibling = ask(shared, "guide", {"post": [["127.0.0.1", special["port"]]]}, target="customIps1")
    assert sibling["post"][f"127.0.0.1:{special['port']}"].startswith("ok: 200"), sibling
