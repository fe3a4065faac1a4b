"""SageMaker's hosting features on `polyhost serve --backend ray`: a real 2-node Ray cluster on
loopback addresses (127.0.0.2-3), boto3, and a real S3 (moto's server) for data capture.

The process backend's tests (tests/deploy/test_serverless.py, tests/router/test_shadow_variants.py,
tests/deploy/test_guardrails.py, tests/capture/test_data_capture.py) cover each feature in
depth; these check what is the backend's own part of each:

- serverless: no agent, placement group or container before the first request; the cold start
  places the instance on the node that has room for MemorySizeInMB (not merely the one with the
  most free CPU), with MemorySizeInMB as the container's memory limit on its node; nothing left
  on the cluster once `--serverless-idle-s` passed; MaxConcurrency throttles; a MemorySizeInMB
  no node can hold fails the cold start at once, saying so; and the warm agent a `kill -9`ed
  server leaves is stopped by the next server (last: it restarts the module's server);
- shadow variants: the shadow's own container, on its node, receives a copy of each request;
- deployment guardrails: a canary shares traffic then completes, and an alarm rolls the next
  update back to the serving fleet;
- data capture: each invocation's record reaches S3.

One cluster and one server for the module, in file order; the serverless test's endpoints
are deleted before the others need the room.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.backends.ray.fixtures import (
    WIDE_IMAGE,
    add_image,
    cluster_leftovers,
    echo_containers_by_node,
    echo_processes,
    ray_server,
    wait_until_nothing_left,
)
from tests.deploy.test_serverless import memory_limit
from tests.support.endpoints import (
    create_config,
    create_model,
    deploy,
    echo_container,
    invoke,
    wait_status,
)
from tests.support.ray_cluster import GIB, MIB, LocalRayCluster, ray_installed
from tests.support.s3 import MotoS3, s3_server
from tests.support.server import PolyhostProcess
from tests.support.waiting import eventually

__all__ = ["s3_server"]  # the fixture, used by name below

pytestmark = pytest.mark.skipif(not ray_installed(), reason="ray is not installed")

IDLE_S = 3.0
FLUSH_S = 1.0
START_S = 120.0
# 1.5 GiB of a node's 2: a node holding one has no room left for a 1024 MB serverless variant.
HEAVY_IMAGE = "polyhost-test/heavy:1"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    with LocalRayCluster(nodes=2, tmp_path=tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture(scope="module")
def server(
    cluster: LocalRayCluster, s3_server: MotoS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PolyhostProcess]:
    process = ray_server(
        cluster,
        tmp_path_factory.mktemp("ray-features"),
        "--serverless-idle-s", str(IDLE_S),
        "--alarm-evaluation-interval", "600",  # alarms move only by SetAlarmState
        "--data-capture-flush-s", str(FLUSH_S),
        "--ray-placement-timeout", "10",
    )  # fmt: skip
    add_image(process, HEAVY_IMAGE, memory=3 * GIB // 2)
    process.env = {**process.env, **s3_server.env()}  # the capture writer's S3
    process.start(timeout=60)
    yield process
    process.stop()


def in_service(sagemaker: Any, name: str) -> dict[str, Any]:
    described = wait_status(sagemaker, name, timeout=START_S)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    return described


def node_of(cluster: LocalRayCluster, endpoint: str) -> str:
    (node,) = echo_containers_by_node(cluster, endpoint)
    return node


def test_serverless_cold_start_lands_where_there_is_room_and_idles_away(
    cluster: LocalRayCluster, server: PolyhostProcess, sagemaker: Any, runtime: Any
) -> None:
    # One node keeps the most free CPU but too little memory; the other the reverse.
    for name, image in (("heavy", HEAVY_IMAGE), ("wide", WIDE_IMAGE)):
        described = deploy(sagemaker, name, [{"Image": image, "Environment": {"ECHO_NAME": name}}])
        assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    heavy, wide = node_of(cluster, "heavy"), node_of(cluster, "wide")
    assert heavy != wide

    create_model(sagemaker, "sls", [echo_container(None, ECHO_NAME="sls")])
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
    nothing = {"actors": [], "groups": [], "containers": 0}
    assert cluster_leftovers(cluster, server.state_dir, "sls") == nothing

    assert invoke(runtime, "sls", b"cold")[0] == b"sls:cold"  # waits for the cold start
    assert echo_containers_by_node(cluster, "sls") == {wide: ["sls"]}
    (container,) = echo_processes(cluster, "sls")
    assert memory_limit(container) == 1024 * MIB  # MemorySizeInMB, as the node applies limits
    assert invoke(runtime, "sls", b"warm")[0] == b"sls:warm"

    for name in ("heavy", "wide"):
        sagemaker.delete_endpoint(EndpointName=name)
    wait_until_nothing_left(cluster, server.state_dir, "sls", timeout_s=IDLE_S + 30)
    summary = sagemaker.describe_endpoint(EndpointName="sls")["ProductionVariants"][0]
    assert summary["CurrentInstanceCount"] == 0


def test_serverless_max_concurrency_throttles_and_no_node_large_enough_is_named(
    sagemaker: Any, runtime: Any
) -> None:
    """MaxConcurrency is the router's (ThrottlingException); a MemorySizeInMB larger than
    every node cannot be placed: the cold start fails at once, quoting the placement."""
    assert invoke(runtime, "sls", b"warm")[0] == b"sls:warm"

    def slow(_: int) -> bytes | ClientError:
        try:
            return invoke(runtime, "sls", b"slow", CustomAttributes="sleep=1.0")[0]
        except ClientError as error:
            return error

    with ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(slow, range(3)))  # MaxConcurrency 2, three at once
    errors = [o for o in outcomes if isinstance(o, ClientError)]
    assert len(errors) == 1, outcomes
    assert errors[0].response["Error"]["Code"] == "ThrottlingException"

    create_model(sagemaker, "sls-huge", [echo_container(None, ECHO_NAME="huge")])
    sagemaker.create_endpoint_config(
        EndpointConfigName="sls-huge",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "sls-huge",
                "ServerlessConfig": {"MemorySizeInMB": 6144, "MaxConcurrency": 1},
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName="sls-huge", EndpointConfigName="sls-huge")
    in_service(sagemaker, "sls-huge")
    started = time.monotonic()
    with pytest.raises(ClientError) as raised:
        invoke(runtime, "sls-huge", b"x")
    assert time.monotonic() - started < 10  # not the placement timeout: no node is that large
    error = raised.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
        "ServiceUnavailable",
        503,
    )
    assert "6GiB of memory" in error["Error"]["Message"], error
    assert "no node is that large" in error["Error"]["Message"], error
    sagemaker.delete_endpoint(EndpointName="sls-huge")


def endpoint_logs(server: PolyhostProcess, endpoint: str) -> str:
    with urllib.request.urlopen(f"{server.url}/polyhost/endpoints/{endpoint}/logs") as answer:
        return str(answer.read().decode())


def test_the_shadow_variants_container_gets_a_copy_of_each_request(
    cluster: LocalRayCluster, server: PolyhostProcess, sagemaker: Any, runtime: Any
) -> None:
    create_model(sagemaker, "shadowed-prod", [echo_container(None, ECHO_NAME="prod")])
    create_model(sagemaker, "shadowed-shadow", [echo_container(None, ECHO_NAME="shadow")])
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
    names = sorted(n for ns in echo_containers_by_node(cluster, "shadowed").values() for n in ns)
    assert names == ["prod", "shadow"]
    for index in range(5):
        # say= makes the container print a line: its own proof of the request, in its log.
        body, _ = invoke(runtime, "shadowed", b"x", CustomAttributes=f"say=copy-{index}")
        assert body == b"prod:x"  # the caller's answer is production's

    def copies() -> bool:
        text = endpoint_logs(server, "shadowed")
        return all(f"shadow: copy-{i}" in text and f"prod: copy-{i}" in text for i in range(5))

    eventually(copies, "a copy of each request in the shadow's container's log", interval=0.3)
    sagemaker.delete_endpoint(EndpointName="shadowed")


def fleet(sagemaker: Any, name: str, instances: int = 2) -> str:
    """A model answering `<name>:` and a config of one AllTraffic variant of it."""
    create_model(sagemaker, name, [echo_container(None, ECHO_NAME=name)])
    create_config(sagemaker, name, [("AllTraffic", name, instances, 1.0)])
    return name


def status(sagemaker: Any, endpoint: str) -> str:
    return str(sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"])


def fleet_of(runtime: Any, endpoint: str) -> str:
    return invoke(runtime, endpoint, b"x")[0].decode().split(":")[0]


def test_a_canary_shares_traffic_then_completes_and_an_alarm_rolls_the_next_back(
    cluster: LocalRayCluster, server: PolyhostProcess, sagemaker: Any, runtime: Any
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
        seen.append(fleet_of(runtime, "guarded"))
    described = sagemaker.describe_endpoint(EndpointName="guarded")
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert "green" in seen, "the canary never took traffic"
    assert "blue" in seen[seen.index("green") :], f"no shared bake: {seen}"
    assert {fleet_of(runtime, "guarded") for _ in range(10)} == {"green"}
    by_node = eventually(
        lambda: echo_containers_by_node(cluster, "guarded"),
        "the old fleet's containers to stop",
        until=lambda found: sorted(n for ns in found.values() for n in ns) == ["green"] * 2,
        interval=0.2,
    )
    assert len(by_node) == 2  # the new fleet, too, one instance per node

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
    eventually(lambda: fleet_of(runtime, "guarded") == "red", "the canary's answers", START_S)
    cloudwatch.set_alarm_state(
        AlarmName=alarm, StateValue="ALARM", StateReason="Threshold Crossed: test"
    )
    eventually(lambda: status(sagemaker, "guarded") == "InService", "the rollback", interval=0.1)
    described = sagemaker.describe_endpoint(EndpointName="guarded")
    assert described["EndpointConfigName"] == "green"
    assert alarm in described["FailureReason"] and "rolled back" in described["FailureReason"]
    assert {fleet_of(runtime, "guarded") for _ in range(10)} == {"green"}
    eventually(
        lambda: echo_containers_by_node(cluster, "guarded"),
        "the canary's container to stop",
        until=lambda found: sorted(n for ns in found.values() for n in ns) == ["green"] * 2,
        interval=0.2,
    )
    sagemaker.delete_endpoint(EndpointName="guarded")


def test_captured_invocations_reach_s3(
    server: PolyhostProcess, sagemaker: Any, runtime: Any, s3_server: MotoS3
) -> None:
    bucket = s3_server.new_bucket("capture")
    create_model(sagemaker, "captured", [echo_container(None, ECHO_NAME="captured")])
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
            "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]},
        },
    )
    sagemaker.create_endpoint(EndpointName="captured", EndpointConfigName="captured")
    in_service(sagemaker, "captured")
    for index in range(3):
        invoke(runtime, "captured", f"{index},1".encode(), ContentType="text/csv")
    s3 = s3_server.client()

    def captured() -> list[dict[str, Any]] | None:
        listing = s3.list_objects_v2(Bucket=bucket, Prefix="capture/captured/AllTraffic/")
        found = [
            json.loads(line)
            for entry in listing.get("Contents", [])
            for line in s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read().splitlines()
        ]
        return found if len(found) >= 3 else None

    found = eventually(captured, "three capture records in S3", FLUSH_S * 20, interval=0.2)
    pairs = sorted(
        (r["captureData"]["endpointInput"]["data"], r["captureData"]["endpointOutput"]["data"])
        for r in found
    )
    assert pairs == [(f"{n},1", f"captured:{n},1") for n in range(3)]  # the container's answers
    sagemaker.delete_endpoint(EndpointName="captured")


def test_a_killed_server_leaves_no_warm_serverless_container_behind(
    cluster: LocalRayCluster, server: PolyhostProcess, sagemaker: Any, runtime: Any
) -> None:
    """kill -9 while a serverless container is warm: its agent outlives the server on the
    cluster; the next server brings the endpoint back cold, so it stops that agent as unclaimed,
    and a request then starts the variant anew."""
    assert invoke(runtime, "sls", b"warm")[0] == b"sls:warm"
    assert len(echo_processes(cluster, "sls")) == 1
    server.stop(signal.SIGKILL)
    assert len(echo_processes(cluster, "sls")) == 1  # detached: it survives the server
    server.process = None
    server.start(timeout=60)
    wait_until_nothing_left(cluster, server.state_dir, "sls", timeout_s=30)
    assert invoke(runtime, "sls", b"again")[0] == b"sls:again"
    assert len(echo_processes(cluster, "sls")) == 1
    sagemaker.delete_endpoint(EndpointName="sls")
    wait_until_nothing_left(cluster, server.state_dir, "sls")
