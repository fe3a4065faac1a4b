"""Inference components on `--backend docker`: each copy is a Docker container holding the
component's limits (NanoCpus, Memory), and the copies answer as on the process backend."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polyhost.backends.docker.labels import HOSTNAME
from tests.support.docker import (
    client_or_skip,
    docker_server,
    ensure_images,
    labelled,
    sklearn_model,
)
from tests.support.server import PolyhostProcess

START_S = 180.0
ROLE = "arn:aws:iam::123456789012:role/polyhost"


@pytest.fixture(scope="module")
def docker_client() -> Any:
    client = client_or_skip()
    ensure_images()
    return client


@pytest.fixture(scope="module")
def server(
    docker_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PolyhostProcess]:
    state = tmp_path_factory.mktemp("docker-ic") / "state"
    proc = docker_server(state).start()
    yield proc
    proc.stop()
    for container in labelled(docker_client, state):  # only if a test failed half-way
        docker_client.api.remove_container(container["Id"], force=True)


def wait_component(sagemaker: Any, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + START_S
    while True:
        found: dict[str, Any] = sagemaker.describe_inference_component(InferenceComponentName=name)
        if found["InferenceComponentStatus"] not in ("Creating", "Updating"):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


def test_copies_are_docker_containers_with_the_components_limits(
    server: PolyhostProcess, docker_client: Any, tmp_path: Path
) -> None:
    url, rows = sklearn_model(tmp_path / "iris")
    sagemaker = server.sagemaker()
    sagemaker.create_model(
        ModelName="iris",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "polyhost/sklearn", "ModelDataUrl": url},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="shared",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "InstanceType": "ml.m5.large", "InitialInstanceCount": 2}
        ],
    )
    sagemaker.create_endpoint(EndpointName="shared", EndpointConfigName="shared")
    sagemaker.create_inference_component(
        InferenceComponentName="iris-ic",
        EndpointName="shared",
        VariantName="AllTraffic",
        Specification={
            "ModelName": "iris",
            "ComputeResourceRequirements": {
                "NumberOfCpuCoresRequired": 0.5,
                "MinMemoryRequiredInMb": 256,
                "MaxMemoryRequiredInMb": 768,
            },
        },
        RuntimeConfig={"CopyCount": 2},
    )
    found = wait_component(sagemaker, "iris-ic")
    assert found["InferenceComponentStatus"] == "InService", found
    assert found["RuntimeConfig"]["CurrentCopyCount"] == 2
    copies = [
        c for c in labelled(docker_client, server.state_dir) if c["Labels"][HOSTNAME] == "iris-ic"
    ]
    assert len(copies) == 2
    for copy in copies:
        host = docker_client.api.inspect_container(copy["Id"])["HostConfig"]
        assert host["NanoCpus"] == 500_000_000
        assert host["Memory"] == 768 * 1024 * 1024
    answer = server.runtime().invoke_endpoint(
        EndpointName="shared",
        InferenceComponentName="iris-ic",
        Body=json.dumps(rows),
        ContentType="application/json",
    )
    # The iris rows are one of each class, which the model tells apart.
    assert json.loads(answer["Body"].read()) == [0, 1, 2]
    sagemaker.delete_inference_component(InferenceComponentName="iris-ic")
    deadline = time.monotonic() + 60
    while any(
        c["Labels"][HOSTNAME] == "iris-ic" and c["State"] == "running"
        for c in labelled(docker_client, server.state_dir)
    ):
        assert time.monotonic() < deadline, "the copies' containers still run after delete"
        time.sleep(0.2)
