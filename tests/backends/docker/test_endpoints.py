"""`polyhost serve --backend docker` end to end: real daemon, real images, boto3.

One Direct endpoint holds the built-in scikit-learn image (a real iris model) and the tests'
bring-your-own image; the tests below use it in file order: both answer (sklearn as the
process backend answers), a `docker kill`ed container comes back while its neighbour keeps
serving, an UpdateEndpoint under steady load loses no request, and a delete leaves no container.
Waits have generous deadlines only so a failure cannot hang.
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
    sklearn_model,
)
from tests.support.docker_images import BYO_IMAGE, NOLABEL_IMAGE
from tests.support.endpoints import create_config, create_model, wait_status
from tests.support.server import PolyhostProcess
from tests.support.waiting import eventually

START_S = 180.0
ROLE = "arn:aws:iam::123456789012:role/polyhost"


@pytest.fixture(scope="module")
def docker_client() -> Any:
    client = client_or_skip()
    ensure_images()
    return client


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[list[float]]]:
    return sklearn_model(tmp_path_factory.mktemp("iris"))


@pytest.fixture(scope="module")
def server(
    docker_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PolyhostProcess]:
    state = tmp_path_factory.mktemp("docker") / "state"
    proc = docker_server(state).start()
    yield proc
    proc.stop()
    for container in labelled(docker_client, state):  # only if a test failed half-way
        docker_client.api.remove_container(container["Id"], force=True)


def containers(model_url: str, byo_name: str = "byo") -> list[dict[str, Any]]:
    return [
        {"Image": "polyhost/sklearn", "ContainerHostname": "sk", "ModelDataUrl": model_url},
        {
            "Image": BYO_IMAGE,
            "ContainerHostname": "byo",
            "ModelDataUrl": model_url,
            "Environment": {"NAME": byo_name},
        },
    ]


def deploy_direct(sagemaker: Any, name: str, model_url: str) -> dict[str, Any]:
    create_model(sagemaker, name, containers(model_url), mode="Direct")
    create_config(sagemaker, name, [("AllTraffic", name, 1, 1.0)])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return wait_status(sagemaker, name, timeout=START_S)


def invoke(runtime: Any, endpoint: str, hostname: str, body: bytes | str) -> bytes:
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint,
        Body=body,
        ContentType="application/json",
        TargetContainerHostname=hostname,
    )
    return bytes(answer["Body"].read())


@pytest.fixture(scope="module")
def direct(server: PolyhostProcess, model: tuple[str, list[list[float]]]) -> str:
    description = deploy_direct(server.sagemaker(), "direct", model[0])
    assert description["EndpointStatus"] == "InService", description.get("FailureReason")
    return "direct"


def test_both_containers_answer_and_sklearn_answers_as_the_process_backend_does(
    server: PolyhostProcess,
    direct: str,
    model: tuple[str, list[list[float]]],
    tmp_path: Path,
) -> None:
    runtime = server.runtime()
    url, rows = model
    in_docker = json.loads(invoke(runtime, direct, "sk", json.dumps(rows)))
    byo = json.loads(invoke(runtime, direct, "byo", "hello"))
    assert byo["name"] == "byo" and byo["body"] == "hello"
    assert byo["argv"] == ["serve"]  # started as SageMaker starts a container

    reference = PolyhostProcess(state_dir=tmp_path / "process").start()
    try:
        sagemaker = reference.sagemaker()
        create_model(sagemaker, "iris", [{"Image": "polyhost/sklearn", "ModelDataUrl": url}])
        create_config(sagemaker, "iris", [("AllTraffic", "iris", 1, 1.0)])
        sagemaker.create_endpoint(EndpointName="iris", EndpointConfigName="iris")
        description = wait_status(sagemaker, "iris", timeout=START_S)
        assert description["EndpointStatus"] == "InService", description.get("FailureReason")
        answer = reference.runtime().invoke_endpoint(
            EndpointName="iris", Body=json.dumps(rows), ContentType="application/json"
        )
        in_process = json.loads(answer["Body"].read())
    finally:
        reference.stop()
    assert in_docker == in_process
    assert len(in_docker) == len(rows)


def test_the_model_is_mounted_read_only_and_no_server_secret_is_passed(
    server: PolyhostProcess, direct: str
) -> None:
    byo = json.loads(invoke(server.runtime(), direct, "byo", "look"))
    assert byo["model_files"] == ["model.joblib"]
    assert byo["model_writable"] is False
    environment = set(byo["environment"])
    assert {"SAGEMAKER_BIND_TO_PORT", "SAGEMAKER_SAFE_PORT_RANGE", "NAME"} <= environment
    # The tests' server runs with AWS keys in its environment: none reaches a container.
    assert not environment & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}


def test_logs_and_stats_of_docker_containers(server: PolyhostProcess, direct: str) -> None:
    def logs() -> str | None:
        url = f"{server.url}/polyhost/endpoints/{direct}/logs"
        with urllib.request.urlopen(url, timeout=10) as answer:
            text = answer.read().decode()
        return text if "byo serving on" in text and "model loaded" in text else None

    eventually(logs, "both containers' output in the endpoint's logs")

    def sampled() -> list[str] | None:
        with urllib.request.urlopen(f"{server.admin_url}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        lines = [
            line
            for line in text.splitlines()
            if line.startswith("polyhost_container_memory_rss_bytes") and f'"{direct}"' in line
        ]
        values = [float(line.rsplit(" ", 1)[1]) for line in lines]
        return lines if len(values) == 2 and all(v > 0 for v in values) else None

    eventually(sampled, "memory samples of both containers")


def test_a_killed_container_comes_back_and_its_neighbour_never_fails(
    server: PolyhostProcess, direct: str, docker_client: Any, model: tuple[str, Any]
) -> None:
    runtime = server.runtime()
    rows = json.dumps(model[1])
    state = server.state_dir
    before = by_hostname(docker_client, state)
    with SteadyLoad(lambda: invoke(runtime, direct, "sk", rows)) as load:
        docker_client.api.kill(before["byo"])

        def back() -> bool:
            now = by_hostname(docker_client, state).get("byo")
            if now in (None, before["byo"]):
                return False
            try:
                return json.loads(invoke(runtime, direct, "byo", "again"))["body"] == "again"
            except ClientError:
                return False

        eventually(back, "the killed container to be replaced and serve again", timeout=START_S)
    assert load.calls > 0
    assert load.failures == []
    assert by_hostname(docker_client, state)["sk"] == before["sk"]  # never restarted


def test_update_endpoint_under_steady_load_loses_no_request(
    server: PolyhostProcess, direct: str, model: tuple[str, Any]
) -> None:
    sagemaker = server.sagemaker()
    runtime = server.runtime()
    rows = json.dumps(model[1])
    create_model(sagemaker, "direct-v2", containers(model[0], byo_name="byo-v2"), mode="Direct")
    create_config(sagemaker, "direct-v2", [("AllTraffic", "direct-v2", 1, 1.0)])
    with SteadyLoad(lambda: invoke(runtime, direct, "sk", rows)) as load:
        sagemaker.update_endpoint(EndpointName=direct, EndpointConfigName="direct-v2")
        description = wait_status(sagemaker, direct, timeout=START_S)
        assert description["EndpointStatus"] == "InService", description.get("FailureReason")
        eventually(
            lambda: json.loads(invoke(runtime, direct, "byo", "v"))["name"] == "byo-v2",
            "the new revision to serve",
        )
    assert load.calls > 0
    assert load.failures == []


def test_delete_leaves_no_container(
    server: PolyhostProcess, direct: str, docker_client: Any
) -> None:
    sagemaker = server.sagemaker()
    sagemaker.delete_endpoint(EndpointName=direct)
    eventually(
        lambda: not labelled(docker_client, server.state_dir),
        "every container of the deleted endpoint to be removed",
        timeout=START_S,
    )


def test_a_serial_pipeline_of_docker_containers(
    server: PolyhostProcess, model: tuple[str, list[list[float]]]
) -> None:
    sagemaker = server.sagemaker()
    url, rows = model
    create_model(
        sagemaker,
        "serial",
        [
            {"Image": "polyhost/sklearn", "ModelDataUrl": url},
            {"Image": BYO_IMAGE, "Environment": {"NAME": "last"}},
        ],
    )
    create_config(sagemaker, "serial", [("AllTraffic", "serial", 1, 1.0)])
    sagemaker.create_endpoint(EndpointName="serial", EndpointConfigName="serial")
    description = wait_status(sagemaker, "serial", timeout=START_S)
    assert description["EndpointStatus"] == "InService", description.get("FailureReason")
    answer = server.runtime().invoke_endpoint(
        EndpointName="serial", Body=json.dumps(rows), ContentType="application/json"
    )
    last = json.loads(answer["Body"].read())
    assert last["name"] == "last"
    assert len(json.loads(last["body"])) == len(rows)  # the sklearn predictions, passed on
    sagemaker.delete_endpoint(EndpointName="serial")


def failed(server: PolyhostProcess, name: str, image: str) -> str:
    sagemaker = server.sagemaker()
    create_model(sagemaker, name, [{"Image": image}])
    create_config(sagemaker, name, [("AllTraffic", name, 1, 1.0)])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    description = wait_status(sagemaker, name, timeout=START_S)
    assert description["EndpointStatus"] == "Failed"
    return str(description["FailureReason"])


def test_an_image_without_the_bind_to_port_label_fails_with_the_fix(
    server: PolyhostProcess,
) -> None:
    reason = failed(server, "nolabel", NOLABEL_IMAGE)
    assert f"Image {NOLABEL_IMAGE} does not accept a port" in reason
    assert "LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true" in reason
    assert "SAGEMAKER_BIND_TO_PORT" in reason


def test_a_missing_image_is_accepted_by_create_model_and_fails_the_endpoint(
    server: PolyhostProcess,
) -> None:
    reason = failed(server, "absent", "polyhost-test/absent:1")
    assert "polyhost-test/absent:1 is not on the Docker daemon" in reason
    assert "docker pull" in reason and "--docker-pull missing" in reason


def test_a_malformed_image_reference_is_refused_by_create_model(server: PolyhostProcess) -> None:
    with pytest.raises(ClientError) as raised:
        create_model(server.sagemaker(), "bad-ref", [{"Image": "Not/A:valid:ref"}])
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert "Not/A:valid:ref" in raised.value.response["Error"]["Message"]


def test_an_unreachable_daemon_fails_the_endpoint_with_the_reason(tmp_path: Path) -> None:
    pytest.importorskip("docker")
    proc = docker_server(tmp_path / "state")
    proc.env = {"DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    proc.start()
    try:
        reason = failed(proc, "nodaemon", BYO_IMAGE)
    finally:
        proc.stop()
    assert "Docker daemon" in reason and "does not answer" in reason
    assert "DOCKER_HOST" in reason
