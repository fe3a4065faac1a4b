"""SageMaker's hosting features on `polyhost serve --backend docker`: real daemon, real images,
boto3, and a real S3 (moto's server) for data capture.

The process backend's tests (tests/deploy/test_serverless.py, tests/router/test_shadow_variants.py,
tests/deploy/test_guardrails.py, tests/capture/test_data_capture.py) cover each feature in
depth; these check what is the backend's own part of each, with the bring-your-own image:

- serverless: no container before the first request, one Docker container after it, with
  MemorySizeInMB as Docker's memory limit, and none once `--serverless-idle-s` passed; the warm
  container a `kill -9`ed server leaves is removed by the next server (last: it restarts the
  module's server);
- shadow variants: the shadow's own container receives a copy of each request;
- deployment guardrails: a canary shares traffic then completes, and an alarm rolls the next
  update back to the serving fleet;
- data capture: each invocation's record reaches S3.

One server for the module (its flags serve every feature: a short idle stop, alarms moved only
by SetAlarmState, a short capture flush). Waits have generous deadlines only so a failure
cannot hang.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from polyhost.backends.docker.labels import ENDPOINT, VARIANT
from tests.support.docker import client_or_skip, docker_server, ensure_images, labelled
from tests.support.docker_images import BYO_IMAGE
from tests.support.endpoints import create_config, create_model, wait_status
from tests.support.s3 import MotoS3, s3_server
from tests.support.server import PolyhostProcess
from tests.support.waiting import eventually

__all__ = ["s3_server"]  # the fixture, used by name below

START_S = 120.0
IDLE_S = 2.0
FLUSH_S = 1.0
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def docker_client() -> Any:
    client = client_or_skip()
    ensure_images()
    return client


@pytest.fixture(scope="module")
def server(
    docker_client: Any, s3_server: MotoS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PolyhostProcess]:
    state = tmp_path_factory.mktemp("docker-features") / "state"
    proc = docker_server(
        state,
        "--serverless-idle-s", str(IDLE_S),
        "--alarm-evaluation-interval", "600",  # alarms move only by SetAlarmState
        "--data-capture-flush-s", str(FLUSH_S),
    )  # fmt: skip
    proc.env = s3_server.env()  # the capture writer's S3; containers never get these keys
    proc.start()
    yield proc
    proc.stop()
    for container in labelled(docker_client, state):  # only if a test failed half-way
        docker_client.api.remove_container(container["Id"], force=True)


@pytest.fixture(scope="module")
def sagemaker(server: PolyhostProcess) -> Any:
    return server.sagemaker()


@pytest.fixture(scope="module")
def runtime(server: PolyhostProcess) -> Any:
    return server.runtime()


def byo(name: str) -> dict[str, Any]:
    """The bring-your-own image, answering JSON that carries `name`."""
    return {"Image": BYO_IMAGE, "Environment": {"NAME": name}}


def containers_of(client: Any, server: PolyhostProcess, endpoint: str) -> list[dict[str, Any]]:
    """The server's Docker containers (any state) of `endpoint`."""
    return [c for c in labelled(client, server.state_dir) if c["Labels"].get(ENDPOINT) == endpoint]


def answer(runtime: Any, endpoint: str, body: str) -> dict[str, Any]:
    reply = runtime.invoke_endpoint(
        EndpointName=endpoint, Body=body.encode(), ContentType="application/json"
    )
    found: dict[str, Any] = json.loads(reply["Body"].read())
    return found


def in_service(sagemaker: Any, name: str) -> dict[str, Any]:
    described = wait_status(sagemaker, name, timeout=START_S)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    return described


def test_serverless_starts_one_limited_container_on_demand_and_stops_it_when_idle(
    server: PolyhostProcess, sagemaker: Any, runtime: Any, docker_client: Any
) -> None:
    create_model(sagemaker, "sls", [byo("sls")])
    sagemaker.create_endpoint_config(
        EndpointConfigName="sls",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "sls",
                "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 2},
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="sls", EndpointConfigName="sls")
    described = in_service(sagemaker, "sls")
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 0
    assert containers_of(docker_client, server, "sls") == []  # InService, and no container

    assert answer(runtime, "sls", "cold")["body"] == "cold"  # waits for the cold start
    (started,) = containers_of(docker_client, server, "sls")
    assert started["State"] == "running"
    host_config = docker_client.api.inspect_container(started["Id"])["HostConfig"]
    assert host_config["Memory"] == 1024 * MIB  # MemorySizeInMB is Docker's memory limit
    assert host_config["MemorySwap"] == 1024 * MIB  # and no swap beyond it
    assert answer(runtime, "sls", "warm")["body"] == "warm"
    assert [c["Id"] for c in containers_of(docker_client, server, "sls")] == [started["Id"]]

    eventually(
        lambda: containers_of(docker_client, server, "sls") == [],
        "the idle container to be stopped and removed",
        timeout=IDLE_S + 30,
        interval=0.2,
    )
    assert sagemaker.describe_endpoint(EndpointName="sls")["EndpointStatus"] == "InService"
    assert answer(runtime, "sls", "again")["body"] == "again"  # started once more
    (again,) = containers_of(docker_client, server, "sls")
    assert again["Id"] != started["Id"]


def test_the_shadow_variants_container_gets_a_copy_of_each_request(
    server: PolyhostProcess, sagemaker: Any, runtime: Any, docker_client: Any
) -> None:
    create_model(sagemaker, "shadowed-prod", [byo("prod")])
    create_model(sagemaker, "shadowed-shadow", [byo("shadow")])
    variant = {"InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
    sagemaker.create_endpoint_config(
        EndpointConfigName="shadowed",
        ProductionVariants=[{"VariantName": "prod", "ModelName": "shadowed-prod", **variant}],
        ShadowProductionVariants=[
            {"VariantName": "shadow", "ModelName": "shadowed-shadow", **variant}
        ],
    )
    sagemaker.create_endpoint(EndpointName="shadowed", EndpointConfigName="shadowed")
    in_service(sagemaker, "shadowed")
    by_variant = {
        c["Labels"][VARIANT]: c["Id"] for c in containers_of(docker_client, server, "shadowed")
    }
    assert sorted(by_variant) == ["prod", "shadow"]
    for _ in range(5):
        # `alloc:0` makes the BYO server print a line: the container's own proof of a request.
        assert answer(runtime, "shadowed", "alloc:0")["name"] == "prod"  # the caller's answer

    def copies(variant_name: str) -> int:
        output = str(docker_client.api.logs(by_variant[variant_name]).decode())
        return output.count("allocating 0 MiB")

    eventually(
        lambda: (copies("shadow"), copies("prod")) == (5, 5),
        "a copy of each request in the shadow's container (and each in production's)",
        interval=0.2,
    )
    sagemaker.delete_endpoint(EndpointName="shadowed")


def fleet(sagemaker: Any, name: str, instances: int = 2) -> str:
    """A model answering with NAME `name` and a config of one AllTraffic variant of it."""
    create_model(sagemaker, name, [byo(name)])
    create_config(sagemaker, name, [("AllTraffic", name, instances, 1.0)])
    return name


def status(sagemaker: Any, endpoint: str) -> str:
    return str(sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"])


def test_a_canary_shares_traffic_then_completes_and_an_alarm_rolls_the_next_back(
    server: PolyhostProcess, sagemaker: Any, runtime: Any, docker_client: Any
) -> None:
    sagemaker.create_endpoint(EndpointName="guarded", EndpointConfigName=fleet(sagemaker, "blue"))
    in_service(sagemaker, "guarded")
    canary = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 3,
                "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
            },
            "TerminationWaitInSeconds": 1,
        }
    }
    sagemaker.update_endpoint(
        EndpointName="guarded", EndpointConfigName=fleet(sagemaker, "green"),
        DeploymentConfig=canary,
    )  # fmt: skip
    seen: list[str] = []
    deadline = time.monotonic() + START_S
    while status(sagemaker, "guarded") == "Updating" and time.monotonic() < deadline:
        seen.append(answer(runtime, "guarded", "x")["name"])
    assert status(sagemaker, "guarded") == "InService"
    assert "green" in seen, "the canary never took traffic"
    assert "blue" in seen[seen.index("green") :], f"no shared bake: {seen}"
    assert {answer(runtime, "guarded", "x")["name"] for _ in range(10)} == {"green"}
    eventually(
        lambda: len(containers_of(docker_client, server, "guarded")) == 2,
        "the old fleet's containers to be removed",
        timeout=START_S,
        interval=0.2,
    )

    alarm = "guarded-errors"
    cloudwatch = server.cloudwatch()
    cloudwatch.put_metric_alarm(
        AlarmName=alarm, Namespace="AWS/SageMaker", MetricName="Invocation5XXErrors",
        Dimensions=[{"Name": "EndpointName", "Value": "guarded"}], Statistic="Sum", Period=60,
        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
    )  # fmt: skip
    rolled: dict[str, Any] = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 300,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
            }
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]},
    }
    sagemaker.update_endpoint(
        EndpointName="guarded", EndpointConfigName=fleet(sagemaker, "red"),
        DeploymentConfig=rolled,
    )  # fmt: skip
    eventually(
        lambda: answer(runtime, "guarded", "x")["name"] == "red" or None,
        "the canary's answers",
        timeout=START_S,
        interval=0.2,
    )
    cloudwatch.set_alarm_state(
        AlarmName=alarm, StateValue="ALARM", StateReason="Threshold Crossed: test"
    )
    eventually(lambda: status(sagemaker, "guarded") == "InService", "the rollback", interval=0.1)
    described = sagemaker.describe_endpoint(EndpointName="guarded")
    assert described["EndpointConfigName"] == "green"
    assert alarm in described["FailureReason"] and "rolled back" in described["FailureReason"]
    assert {answer(runtime, "guarded", "x")["name"] for _ in range(10)} == {"green"}
    eventually(
        lambda: len(containers_of(docker_client, server, "guarded")) == 2,
        "the canary's container to be removed",
        timeout=START_S,
        interval=0.2,
    )
    sagemaker.delete_endpoint(EndpointName="guarded")


def test_captured_invocations_reach_s3(
    server: PolyhostProcess, sagemaker: Any, runtime: Any, s3_server: MotoS3
) -> None:
    bucket = s3_server.new_bucket("capture")
    create_model(sagemaker, "captured", [byo("captured")])
    sagemaker.create_endpoint_config(
        EndpointConfigName="captured",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "captured",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        DataCaptureConfig={
            "EnableCapture": True,
            "InitialSamplingPercentage": 100,
            "DestinationS3Uri": f"s3://{bucket}/capture",
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
        },
    )
    sagemaker.create_endpoint(EndpointName="captured", EndpointConfigName="captured")
    in_service(sagemaker, "captured")
    for index in range(3):
        answer(runtime, "captured", json.dumps({"n": index}))
    s3 = s3_server.client()

    def captured() -> list[dict[str, Any]] | None:
        listing = s3.list_objects_v2(Bucket=bucket, Prefix="capture/captured/AllTraffic/")
        found = [
            json.loads(line)
            for entry in listing.get("Contents", [])
            for line in s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read().splitlines()
        ]
        return found if len(found) >= 3 else None

    found = eventually(captured, "three capture records in S3", timeout=FLUSH_S * 20, interval=0.2)
    inputs = sorted(r["captureData"]["endpointInput"]["data"] for r in found)
    assert inputs == [json.dumps({"n": n}) for n in range(3)]
    outputs = [json.loads(r["captureData"]["endpointOutput"]["data"]) for r in found]
    assert {o["name"] for o in outputs} == {"captured"}  # the container's own answers
    sagemaker.delete_endpoint(EndpointName="captured")


def test_a_killed_server_leaves_no_warm_serverless_container_behind(
    server: PolyhostProcess, sagemaker: Any, runtime: Any, docker_client: Any
) -> None:
    """kill -9 while a serverless container is warm: the container outlives the server; the
    next server on the same state removes it (its predecessor's), brings the endpoint back
    cold, and a request starts the variant anew."""
    assert answer(runtime, "sls", "warm")["body"] == "warm"
    (warm,) = containers_of(docker_client, server, "sls")
    server.stop(signal.SIGKILL)
    assert [c["Id"] for c in containers_of(docker_client, server, "sls")] == [warm["Id"]]
    server.process = None
    server.start(timeout=60)
    eventually(
        lambda: containers_of(docker_client, server, "sls") == [],
        "the killed server's warm container to be removed",
        interval=0.2,
    )
    assert sagemaker.describe_endpoint(EndpointName="sls")["EndpointStatus"] == "InService"
    assert answer(runtime, "sls", "again")["body"] == "again"
    (again,) = containers_of(docker_client, server, "sls")
    assert again["Id"] != warm["Id"]
    sagemaker.delete_endpoint(EndpointName="sls")
    eventually(
        lambda: containers_of(docker_client, server, "sls") == [],
        "the deleted endpoint's container to be removed",
        interval=0.2,
    )
