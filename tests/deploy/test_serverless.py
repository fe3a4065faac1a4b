"""Serverless variants (a variant's ServerlessConfig, docs/serverless.md) on a real server with
the process backend, through boto3: no container until the first request, which waits for the
cold start and is answered; stopped after --serverless-idle-s without a request and started
again by the next; MaxConcurrency enforced with ThrottlingException (HTTP 400);
ProvisionedConcurrency keeps one instance warm; ServerlessConfig's validation."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
from botocore.exceptions import ClientError

from tests.http.admin.test_api import api
from tests.support.endpoints import create_model, echo_container, wait_status
from tests.support.errors import client_error
from tests.support.server import PolyhostProcess, ServerFactory

IDLE_S = 1.5


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    return start_server("--serverless-idle-s", str(IDLE_S))


@pytest.fixture(scope="module")
def sagemaker(server: PolyhostProcess) -> Any:
    return server.sagemaker()


@pytest.fixture(scope="module")
def runtime(server: PolyhostProcess) -> Any:
    return server.runtime()


def containers_of(server: PolyhostProcess, name: str) -> list[psutil.Process]:
    """The server's child processes that run a container of endpoint `name`."""
    assert server.process is not None
    found = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            environment = child.environ()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if environment.get("ECHO_NAME") == name:
            found.append(child)
    return found


def deploy_serverless(sagemaker: Any, name: str, **config: int) -> dict[str, Any]:
    create_model(sagemaker, name, [echo_container(None, ECHO_NAME=name)])
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 2, **config},
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    description = wait_status(sagemaker, name)
    assert description["EndpointStatus"] == "InService", description
    return description


def invoke(runtime: Any, name: str, attributes: str | None = None) -> bytes:
    kwargs: dict[str, Any] = {"EndpointName": name, "Body": b"hello", "ContentType": "text/plain"}
    if attributes is not None:
        kwargs["CustomAttributes"] = attributes
    body: bytes = runtime.invoke_endpoint(**kwargs)["Body"].read()
    return body


def wait_for(check: Any, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def variant_summary(sagemaker: Any, name: str) -> dict[str, Any]:
    summary: dict[str, Any] = sagemaker.describe_endpoint(EndpointName=name)["ProductionVariants"][
        0
    ]
    return summary


def test_cold_start_warm_then_idle_stop(
    server: PolyhostProcess, sagemaker: Any, runtime: Any
) -> None:
    description = deploy_serverless(sagemaker, "sls-cold")
    summary = description["ProductionVariants"][0]
    assert summary["CurrentServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 2}
    assert summary["DesiredServerlessConfig"] == summary["CurrentServerlessConfig"]
    assert summary["CurrentInstanceCount"] == 0
    time.sleep(0.3)
    assert containers_of(server, "sls-cold") == []  # InService, and no process

    # Concurrent first requests share one cold start.
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: invoke(runtime, "sls-cold"), range(2)))
    assert all(b"hello" in a for a in answers), answers
    first = containers_of(server, "sls-cold")
    assert len(first) == 1
    wait_for(lambda: variant_summary(sagemaker, "sls-cold")["CurrentInstanceCount"] == 1,
             "CurrentInstanceCount 1")  # fmt: skip

    started = time.monotonic()
    assert b"hello" in invoke(runtime, "sls-cold")  # warm: the same process
    assert time.monotonic() - started < 1.0
    assert [p.pid for p in containers_of(server, "sls-cold")] == [first[0].pid]

    # Idle: the container is stopped, and the endpoint stays InService with no instance.
    wait_for(lambda: not containers_of(server, "sls-cold"), "the idle container to stop")
    wait_for(lambda: variant_summary(sagemaker, "sls-cold")["CurrentInstanceCount"] == 0,
             "CurrentInstanceCount 0")  # fmt: skip
    assert sagemaker.describe_endpoint(EndpointName="sls-cold")["EndpointStatus"] == "InService"

    # The next request starts it again.
    assert b"hello" in invoke(runtime, "sls-cold")
    again = containers_of(server, "sls-cold")
    assert len(again) == 1 and again[0].pid != first[0].pid


def test_max_concurrency_throttles(server: PolyhostProcess, sagemaker: Any, runtime: Any) -> None:
    deploy_serverless(sagemaker, "sls-busy")
    invoke(runtime, "sls-busy")  # warm it, so the slow ones below overlap for sure

    def slow(_: int) -> bytes | ClientError:
        try:
            return invoke(runtime, "sls-busy", "sleep=1.0")
        except ClientError as error:
            return error

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(slow, range(3)))  # MaxConcurrency 2, three at once
    errors = [o for o in outcomes if isinstance(o, ClientError)]
    assert len(errors) == 1, outcomes
    code, status, message = client_error(errors[0])
    assert (code, status) == ("ThrottlingException", 400)
    assert "MaxConcurrency (2)" in message
    assert sum(1 for o in outcomes if isinstance(o, bytes)) == 2
    assert b"hello" in invoke(runtime, "sls-busy")  # the gate lets requests in again
    # The dashboard's API counts each refused attempt (botocore retries a throttled call).
    refused = errors[0].response["ResponseMetadata"].get("RetryAttempts", 0) + 1
    status, answer = api(server, "/api/endpoints")
    assert status == 200, answer
    (endpoint,) = [e for e in answer["endpoints"] if e["name"] == "sls-busy"]
    assert endpoint["variants"][0]["serverless"]["throttled"] == refused


def test_provisioned_concurrency_keeps_one_warm(
    server: PolyhostProcess, sagemaker: Any, runtime: Any
) -> None:
    description = deploy_serverless(sagemaker, "sls-warm", ProvisionedConcurrency=1)
    summary = description["ProductionVariants"][0]
    assert summary["CurrentServerlessConfig"]["ProvisionedConcurrency"] == 1
    assert summary["CurrentInstanceCount"] == 1
    warm = containers_of(server, "sls-warm")
    assert len(warm) == 1  # before any request
    assert b"hello" in invoke(runtime, "sls-warm")
    time.sleep(IDLE_S * 2)
    assert [p.pid for p in containers_of(server, "sls-warm")] == [warm[0].pid]


def memory_limit(process: psutil.Process) -> int | None:
    """The container's memory limit: its cgroup's (v2 or v1), or else its RLIMIT_AS."""
    for line in Path(f"/proc/{process.pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            limit = Path("/sys/fs/cgroup" + path) / "memory.max"
        elif "memory" in controllers.split(","):
            limit = Path("/sys/fs/cgroup/memory" + path) / "memory.limit_in_bytes"
        else:
            continue
        if limit.exists() and limit.read_text().strip() != "max" and path != "/":
            return int(limit.read_text())
    soft, _ = process.rlimit(psutil.RLIMIT_AS)
    return None if soft == psutil.RLIM_INFINITY else int(soft)


def test_memory_size_is_the_limit(server: PolyhostProcess, sagemaker: Any, runtime: Any) -> None:
    deploy_serverless(sagemaker, "sls-memory", ProvisionedConcurrency=1)
    config = sagemaker.describe_endpoint_config(EndpointConfigName="sls-memory")
    assert config["ProductionVariants"][0]["ServerlessConfig"]["MemorySizeInMB"] == 2048
    (container,) = containers_of(server, "sls-memory")
    assert memory_limit(container) == 2048 * 1024 * 1024


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (
            {"InstanceType": "ml.m5.large", "InitialInstanceCount": 1,
             "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1}},
            "gives both ServerlessConfig and InstanceType and InitialInstanceCount",
        ),
        (
            {"ServerlessConfig": {"MemorySizeInMB": 1500, "MaxConcurrency": 1}},
            "Value '1500' at 'productionVariants.1.member.serverlessConfig.memorySizeInMB' "
            "failed to satisfy constraint: Member must be a multiple of 1024",
        ),
        (
            {"ServerlessConfig": {"MemorySizeInMB": 8192, "MaxConcurrency": 1}},
            "memorySizeInMB' failed to satisfy constraint: Member must have value less than "
            "or equal to 6144",
        ),
        (
            {"ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 201}},
            "maxConcurrency' failed to satisfy constraint: Member must have value less than "
            "or equal to 200",
        ),
        (
            {"ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 2,
                                  "ProvisionedConcurrency": 3}},
            "ServerlessConfig.ProvisionedConcurrency (3) must not be greater than "
            "MaxConcurrency (2)",
        ),
    ],
    ids=["with-instances", "memory-step", "memory-range", "concurrency-range", "provisioned"],
)  # fmt: skip
def test_validation(sagemaker: Any, variant: dict[str, Any], expected: str) -> None:
    if not _has_model(sagemaker):
        create_model(sagemaker, "sls-invalid", [echo_container(None)])
    with pytest.raises(ClientError) as raised:
        sagemaker.create_endpoint_config(
            EndpointConfigName="sls-invalid",
            ProductionVariants=[
                {"VariantName": "AllTraffic", "ModelName": "sls-invalid", **variant}
            ],
        )
    code, status, message = client_error(raised)
    assert (code, status) == ("ValidationException", 400)
    assert expected in message, message


def _has_model(sagemaker: Any) -> bool:
    try:
        sagemaker.describe_model(ModelName="sls-invalid")
    except ClientError:
        return False
    return True


def test_cold_start_is_measured(server: PolyhostProcess, sagemaker: Any, runtime: Any) -> None:
    """ModelSetupTime (AWS/SageMaker, EndpointName and VariantName, µs) counts a cold start:
    a slow first request keeps the container past the recorder's 10 s look."""
    deploy_serverless(sagemaker, "sls-measured")
    start = datetime.now(UTC) - timedelta(minutes=1)
    started = time.monotonic()
    invoke(runtime, "sls-measured", "sleep=10.5")  # cold
    cold_s = time.monotonic() - started - 10.5
    cloudwatch = server.cloudwatch()
    dimensions = [
        {"Name": "EndpointName", "Value": "sls-measured"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    points: list[dict[str, Any]] = []

    def recorded() -> bool:
        points[:] = cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName="ModelSetupTime",
            Dimensions=dimensions,
            StartTime=start,
            EndTime=datetime.now(UTC) + timedelta(minutes=1),
            Period=3600,
            Statistics=["SampleCount", "Maximum"],
        )["Datapoints"]
        return bool(points)

    wait_for(recorded, "ModelSetupTime", timeout=12.0)
    (point,) = points
    assert point["SampleCount"] == 1 and point["Unit"] == "Microseconds"
    assert 0 < point["Maximum"] <= (cold_s + 0.5) * 1e6


def test_no_instance_count_for_a_serverless_variant(sagemaker: Any) -> None:
    deploy_serverless(sagemaker, "sls-count")
    with pytest.raises(ClientError) as raised:
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName="sls-count",
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 2}],
        )
    code, status, message = client_error(raised)
    assert (code, status) == ("ValidationException", 400)
    assert '"AllTraffic" of endpoint' in message and "remove DesiredInstanceCount" in message


def test_no_multi_model_serverless_variant(sagemaker: Any) -> None:
    container = {"Image": "polyhost/sklearn", "Mode": "MultiModel", "ModelDataUrl": "s3://b/m/"}
    create_model(sagemaker, "sls-mme", [container])
    with pytest.raises(ClientError) as raised:
        sagemaker.create_endpoint_config(
            EndpointConfigName="sls-mme",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "sls-mme",
                    "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1},
                }
            ],
        )
    code, status, message = client_error(raised)
    assert (code, status) == ("ValidationException", 400)
    assert "is a multi-model one (Mode MultiModel)" in message


def test_no_serverless_shadow(sagemaker: Any) -> None:
    if not _has_model(sagemaker):
        create_model(sagemaker, "sls-invalid", [echo_container(None)])
    serverless = {"MemorySizeInMB": 1024, "MaxConcurrency": 1}
    with pytest.raises(ClientError) as raised:
        sagemaker.create_endpoint_config(
            EndpointConfigName="sls-shadow",
            ProductionVariants=[
                {"VariantName": "a", "ModelName": "sls-invalid", "ServerlessConfig": serverless}
            ],
            ShadowProductionVariants=[
                {"VariantName": "b", "ModelName": "sls-invalid", "ServerlessConfig": serverless}
            ],
        )
    code, status, message = client_error(raised)
    assert (code, status) == ("ValidationException", 400)
    assert "ShadowProductionVariants.1.ServerlessConfig (serverless shadow variants)" in message


def test_serverless_update_config_changes_the_gate_in_place(
    server: PolyhostProcess, sagemaker: Any, runtime: Any
) -> None:
    """UpdateEndpointWeightsAndCapacities' ServerlessUpdateConfig: a new MaxConcurrency lets
    more requests in at once; a ProvisionedConcurrency starts the cold variant's container
    without a request, and keeps it past the idle stop."""
    deploy_serverless(sagemaker, "sls-update")
    assert b"hello" in invoke(runtime, "sls-update")
    warm = containers_of(server, "sls-update")
    assert len(warm) == 1

    def update(**config: int) -> dict[str, Any]:
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName="sls-update",
            DesiredWeightsAndCapacities=[
                {"VariantName": "AllTraffic", "ServerlessUpdateConfig": config}
            ],
        )
        description = wait_status(sagemaker, "sls-update")
        assert description["EndpointStatus"] == "InService", description
        return dict(description["ProductionVariants"][0])

    summary = update(MaxConcurrency=3)
    assert summary["CurrentServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 3}
    assert [p.pid for p in containers_of(server, "sls-update")] == [warm[0].pid]  # in place
    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(lambda _: invoke(runtime, "sls-update", "sleep=0.5"), range(3)))
    assert all(b"hello" in o for o in outcomes), outcomes  # three at once
    status, answer = api(server, "/api/endpoints")
    (endpoint,) = [e for e in answer["endpoints"] if e["name"] == "sls-update"]
    assert endpoint["variants"][0]["serverless"]["throttled"] == 0  # none, not even retried

    wait_for(lambda: not containers_of(server, "sls-update"), "the idle container to stop")
    summary = update(ProvisionedConcurrency=1)
    assert summary["CurrentServerlessConfig"]["ProvisionedConcurrency"] == 1
    wait_for(lambda: len(containers_of(server, "sls-update")) == 1, "a provisioned container")
    provisioned = containers_of(server, "sls-update")
    time.sleep(IDLE_S * 2)
    assert [p.pid for p in containers_of(server, "sls-update")] == [provisioned[0].pid]

    with pytest.raises(ClientError) as error:
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName="sls-update",
            DesiredWeightsAndCapacities=[
                {
                    "VariantName": "AllTraffic",
                    "ServerlessUpdateConfig": {"MaxConcurrency": 2, "ProvisionedConcurrency": 3},
                }
            ],
        )
    code, status, message = client_error(error)
    assert (code, status) == ("ValidationException", 400)
    assert "would have ProvisionedConcurrency 3 above its MaxConcurrency 2" in message, message
    sagemaker.delete_endpoint(EndpointName="sls-update")
