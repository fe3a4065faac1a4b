"""Faults of Docker containers and of the server running them, through boto3 and a real daemon.

- A server killed with SIGKILL leaves its containers running; the next server on the same state
  folder removes exactly those (by its server id label) and serves the endpoint again.
- A container that allocates past its image's memory limit is killed by the kernel and restarted
  by the supervisor, its log says why, and its neighbour serves on throughout.

Waits have generous deadlines only so a failure cannot hang; nothing asserts a duration.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.docker import (
    SteadyLoad,
    by_hostname,
    client_or_skip,
    docker_server,
    ensure_images,
    labelled,
)
from tests.support.docker_images import BYO_IMAGE, SMALL_IMAGE
from tests.support.endpoints import create_config, create_model, wait_status
from tests.support.server import PolyhostProcess
from tests.support.waiting import eventually

START_S = 180.0
MEMORY_LIMIT_MIB = 64


@pytest.fixture(scope="module")
def docker_client() -> Any:
    client = client_or_skip()
    ensure_images()
    return client


@pytest.fixture
def state(docker_client: Any, tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "state"
    yield folder
    for container in labelled(docker_client, folder):  # only if a test failed half-way
        docker_client.api.remove_container(container["Id"], force=True)


def deploy_pair(server: PolyhostProcess, name: str, image: str) -> None:
    """A Direct endpoint: `bad` of `image` beside a plain BYO neighbour `good`."""
    sagemaker = server.sagemaker()
    create_model(
        sagemaker,
        name,
        [
            {"Image": image, "ContainerHostname": "bad", "Environment": {"NAME": "bad"}},
            {"Image": BYO_IMAGE, "ContainerHostname": "good", "Environment": {"NAME": "good"}},
        ],
        mode="Direct",
    )
    create_config(sagemaker, name, [("AllTraffic", name, 1, 1.0)])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    description = wait_status(sagemaker, name, timeout=START_S)
    assert description["EndpointStatus"] == "InService", description.get("FailureReason")


def invoke(server: PolyhostProcess, name: str, hostname: str, body: str) -> dict[str, Any]:
    answer = server.runtime().invoke_endpoint(
        EndpointName=name, Body=body, ContentType="text/plain", TargetContainerHostname=hostname
    )
    return dict(json.loads(answer["Body"].read()))


def test_containers_left_by_a_killed_server_are_removed_by_the_next(
    docker_client: Any, state: Path
) -> None:
    first = docker_server(state).start()
    deploy_pair(first, "survivor", BYO_IMAGE)
    left = by_hostname(docker_client, state)
    assert set(left) == {"bad", "good"}
    first.kill9()
    assert by_hostname(docker_client, state) == left  # still running, nobody to stop them

    second = docker_server(state, port=first.port).start()
    try:

        def serves() -> bool:
            try:  # 503 ServiceUnavailable while the endpoint is restored
                return invoke(second, "survivor", "good", "again")["body"] == "again"
            except ClientError:
                return False

        eventually(serves, "the endpoint to be served again", timeout=START_S)
        now = {c["Id"] for c in labelled(docker_client, state)}
        assert now and not now & set(left.values())  # the old ones are gone, new ones run
        assert len(now) == 2
        assert "left by a previous run" in second.log()
    finally:
        second.stop()
    eventually(lambda: not labelled(docker_client, state), "a stopped server's containers gone")


def test_a_container_over_its_memory_limit_is_restarted_and_its_neighbour_serves_on(
    docker_client: Any, state: Path, tmp_path: Path
) -> None:
    config = tmp_path / "images.toml"
    # For Docker only `memory`/`cpus` matter; `command` is what the process backend would run.
    config.write_text(
        f'[images."{SMALL_IMAGE}"]\ncommand = ["serve"]\nmemory = "{MEMORY_LIMIT_MIB}MiB"\n',
        encoding="utf-8",
    )
    server = docker_server(state, image_config=config).start()
    try:
        deploy_pair(server, "hungry", SMALL_IMAGE)
        before = by_hostname(docker_client, state)
        limit = docker_client.api.inspect_container(before["bad"])["HostConfig"]["Memory"]
        assert limit == MEMORY_LIMIT_MIB * 1024 * 1024
        with SteadyLoad(lambda: invoke(server, "hungry", "good", "steady")) as load:
            with pytest.raises(ClientError):  # the container dies under the request
                invoke(server, "hungry", "bad", f"alloc:{4 * MEMORY_LIMIT_MIB}")

            def back() -> bool:
                now = by_hostname(docker_client, state).get("bad")
                if now in (None, before["bad"]):
                    return False
                try:
                    return invoke(server, "hungry", "bad", "hello")["body"] == "hello"
                except ClientError:
                    return False

            eventually(back, "the container to be restarted and serve again", timeout=START_S)
        assert load.calls > 0
        assert load.failures == []
        assert by_hostname(docker_client, state)["good"] == before["good"]
        url = f"{server.url}/polyhost/endpoints/hungry/logs"
        with urllib.request.urlopen(url, timeout=10) as answer:
            logs = answer.read().decode()
        assert "went over its memory limit" in logs
    finally:
        server.stop()
