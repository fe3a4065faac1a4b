"""InvokeEndpoint routing end to end: real server, real echo containers, boto3 runtime client."""

from __future__ import annotations

import collections
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import (
    create_config,
    create_model,
    deploy,
    echo_container,
    invoke,
    wait_status,
)
from tests.support.errors import client_error


@pytest.fixture(scope="module")
def direct15(sagemaker: Any) -> str:
    hosts = [f"c{i:02d}" for i in range(15)]
    description = deploy(sagemaker, "direct15", [echo_container(h) for h in hosts], mode="Direct")
    assert description["EndpointStatus"] == "InService", description.get("FailureReason")
    return "direct15"


@pytest.fixture(scope="module")
def serial3(sagemaker: Any) -> str:
    description = deploy(
        sagemaker, "serial3", [echo_container(h) for h in ("pre", "model", "post")]
    )
    assert description["EndpointStatus"] == "InService", description.get("FailureReason")
    return "serial3"


def test_direct_mode_reaches_each_of_15_containers(runtime: Any, direct15: str) -> None:
    for i in range(15):
        body, answer = invoke(
            runtime, direct15, b"hi", TargetContainerHostname=f"c{i:02d}", ContentType="text/plain"
        )
        assert body == f"c{i:02d}:hi".encode()
        assert answer["InvokedProductionVariant"] == "AllTraffic"
        assert answer["ContentType"] == "text/plain"


def test_direct_mode_needs_a_hostname(runtime: Any, direct15: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        invoke(runtime, direct15, b"x")
    code, status, message = client_error(excinfo)
    assert (code, status) == ("ValidationError", 400)
    assert "TargetContainerHostname" in message and "c00" in message


def test_direct_mode_unknown_hostname(runtime: Any, direct15: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        invoke(runtime, direct15, b"x", TargetContainerHostname="nope")
    code, status, message = client_error(excinfo)
    assert (code, status) == ("ValidationError", 400)
    assert "nope" in message and "c14" in message


def test_hostname_given_to_serial_endpoint(runtime: Any, serial3: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        invoke(runtime, serial3, b"x", TargetContainerHostname="pre")
    code, status, message = client_error(excinfo)
    assert (code, status) == ("ValidationError", 400)
    assert "Direct" in message


def test_missing_endpoint(runtime: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        invoke(runtime, "does-not-exist", b"x")
    assert client_error(excinfo) == (
        "ValidationError",
        400,
        "Endpoint does-not-exist of account 123456789012 not found.",
    )


def test_endpoint_name_case_must_match(runtime: Any, serial3: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        invoke(runtime, "SERIAL3", b"x")
    assert client_error(excinfo).code == "ValidationError"


def test_serial_pipeline_runs_containers_in_order(runtime: Any, serial3: str) -> None:
    body, answer = invoke(runtime, serial3, b"x", ContentType="text/csv", Accept="text/csv")
    assert body == b"post:model:pre:x"
    assert answer["ContentType"] == "text/csv"


def test_custom_attributes_pass_both_ways(runtime: Any, direct15: str) -> None:
    _, answer = invoke(
        runtime, direct15, b"x", TargetContainerHostname="c03", CustomAttributes="echo-attrs=1,a=b"
    )
    assert answer["CustomAttributes"] == "echo-attrs=1,a=b"


def test_custom_attributes_too_long(runtime: Any, direct15: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        invoke(runtime, direct15, b"x", TargetContainerHostname="c03", CustomAttributes="a" * 1025)
    code, status, message = client_error(excinfo)
    assert (code, status) == ("ValidationError", 400)
    assert "1024" in message


def test_container_errors_become_model_errors(runtime: Any, direct15: str) -> None:
    with pytest.raises(ClientError) as excinfo:
        invoke(
            runtime, direct15, b"bad input", TargetContainerHostname="c01",
            CustomAttributes="status=400",
        )  # fmt: skip
    code, status, message = client_error(excinfo)
    assert (code, status) == ("ModelError", 424)
    assert message.startswith('Received client error (400) from c01 with message "bad input".')
    error = excinfo.value.response
    assert error["OriginalStatusCode"] == 400
    assert error["OriginalMessage"] == "bad input"
    assert error["LogStreamArn"].endswith(":log-group:/aws/sagemaker/Endpoints/direct15")
    with pytest.raises(ClientError) as excinfo:
        invoke(
            runtime, direct15, b"boom", TargetContainerHostname="c02", CustomAttributes="status=500"
        )
    code, status, message = client_error(excinfo)
    assert (code, status) == ("ModelError", 424)
    assert message.startswith("Received server error (500) from c02")


def test_failing_middle_of_pipeline_names_container(runtime: Any, sagemaker: Any) -> None:
    deploy(
        sagemaker, "serialfail",
        [echo_container("a"), echo_container("b"), echo_container("c")],
    )  # fmt: skip
    # every container sees the attributes; the first to fail is the first container
    with pytest.raises(ClientError) as excinfo:
        invoke(runtime, "serialfail", b"x", CustomAttributes="status=503")
    assert "from a with message" in client_error(excinfo).message


def test_body_limit_is_6_mib(server: Any, direct15: str) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{server.url}/endpoints/{direct15}/invocations",
        data=b"x" * (6 * 1024 * 1024 + 1),
        headers={"X-Amzn-SageMaker-Target-Container-Hostname": "c00"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=30)
    assert excinfo.value.code == 400
    assert excinfo.value.headers["x-amzn-ErrorType"] == "ValidationError"
    assert "6 MB" in json.loads(excinfo.value.read())["message"]
    body, _ = invoke(
        server.runtime(), direct15, b"y" * (6 * 1024 * 1024 - 10), TargetContainerHostname="c00"
    )
    assert len(body) == 6 * 1024 * 1024 - 10 + 4


def test_weights_and_target_variant(sagemaker: Any, runtime: Any) -> None:
    create_model(sagemaker, "wa", [echo_container("a")])
    create_model(sagemaker, "wb", [echo_container("b")])
    create_config(sagemaker, "weights", [("Heavy", "wa", 1, 3.0), ("Light", "wb", 1, 1.0)])
    sagemaker.create_endpoint(EndpointName="weights", EndpointConfigName="weights")
    assert wait_status(sagemaker, "weights")["EndpointStatus"] == "InService"
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(400):
        _, answer = invoke(runtime, "weights", b"x")
        seen[answer["InvokedProductionVariant"]] += 1
    assert seen["Heavy"] + seen["Light"] == 400
    assert 0.62 < seen["Heavy"] / 400 < 0.88, seen  # expected 0.75
    for _ in range(20):
        body, answer = invoke(runtime, "weights", b"x", TargetVariant="Light")
        assert answer["InvokedProductionVariant"] == "Light" and body == b"b:x"
    with pytest.raises(ClientError) as excinfo:
        invoke(runtime, "weights", b"x", TargetVariant="Nope")
    code, status, message = client_error(excinfo)
    assert (code, status) == ("ValidationError", 400)
    assert "Heavy" in message and "Light" in message


def test_replicas_share_the_load(sagemaker: Any, runtime: Any) -> None:
    description = deploy(sagemaker, "replicas", [echo_container("r")], instances=3)
    assert description["EndpointStatus"] == "InService"
    assert description["ProductionVariants"][0]["CurrentInstanceCount"] == 3
    seen = collections.Counter(
        invoke(runtime, "replicas", b"x", CustomAttributes="whoami=1")[0] for _ in range(30)
    )
    assert len(seen) == 3, seen  # three processes on three ports
    assert min(seen.values()) >= 5, seen  # least-outstanding with round-robin ties spreads load
