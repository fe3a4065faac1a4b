"""InvokeEndpointAsync end to end: boto3's sagemaker-runtime against a real server, whose queue
reads inputs from and writes answers to a real S3 (moto's server)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import create_model, echo_container, wait_status
from tests.support.s3 import MotoS3, s3_server  # noqa: F401  (fixture)
from tests.support.server import PolyhostProcess, ServerFactory


@pytest.fixture(scope="module")
def bucket(s3_server: MotoS3) -> str:  # noqa: F811
    return s3_server.new_bucket("async")


@pytest.fixture(scope="module")
def server(start_server: ServerFactory, s3_server: MotoS3) -> PolyhostProcess:  # noqa: F811
    return start_server(env=s3_server.env())


def deploy_async(
    sagemaker: Any,
    name: str,
    bucket: str,
    concurrency: int = 1,
    notification: dict[str, Any] | None = None,
    **env: str,
) -> None:
    create_model(sagemaker, name, [echo_container(name, **env)])
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        AsyncInferenceConfig={
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": concurrency},
            "OutputConfig": {
                "S3OutputPath": f"s3://{bucket}/{name}/out",
                "S3FailurePath": f"s3://{bucket}/{name}/failed",
                **({} if notification is None else {"NotificationConfig": notification}),
            },
        },
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert wait_status(sagemaker, name)["EndpointStatus"] == "InService"


def put_input(s3: MotoS3, bucket: str, body: bytes) -> str:
    key = f"inputs/{uuid.uuid4().hex}"
    s3.put(bucket, key, body)
    return f"s3://{bucket}/{key}"


def wait_object(s3: MotoS3, location: str, timeout: float = 20.0) -> dict[str, Any]:
    bucket, _, key = location[len("s3://") :].partition("/")
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer: dict[str, Any] = s3.client().get_object(Bucket=bucket, Key=key)
            return answer
        except ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_an_answer_appears_in_s3(
    server: PolyhostProcess,
    s3_server: MotoS3,  # noqa: F811
    bucket: str,
) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    deploy_async(sagemaker, "async-ok", bucket)
    described = sagemaker.describe_endpoint_config(EndpointConfigName="async-ok")
    assert described["AsyncInferenceConfig"]["ClientConfig"] == {
        "MaxConcurrentInvocationsPerInstance": 1
    }
    answer = runtime.invoke_endpoint_async(
        EndpointName="async-ok",
        InputLocation=put_input(s3_server, bucket, b"hello"),
        ContentType="text/plain",
        InferenceId="first-one",
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert answer["InferenceId"] == "first-one"
    assert answer["OutputLocation"] == f"s3://{bucket}/async-ok/out/first-one.out"
    assert answer["FailureLocation"] == f"s3://{bucket}/async-ok/failed/first-one-error.out"
    written = wait_object(s3_server, answer["OutputLocation"])
    assert written["Body"].read() == b"async-ok:hello"
    assert written["ContentType"] == "text/plain"


def test_a_failing_container_writes_the_failure_object(
    server: PolyhostProcess,
    s3_server: MotoS3,  # noqa: F811
    bucket: str,
) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    deploy_async(sagemaker, "async-fail", bucket)
    answer = runtime.invoke_endpoint_async(
        EndpointName="async-fail",
        InputLocation=put_input(s3_server, bucket, b"boom"),
        CustomAttributes="status=500",
    )
    failure = wait_object(s3_server, answer["FailureLocation"])
    assert b"ModelError" in failure["Body"].read()
    missing = runtime.invoke_endpoint_async(
        EndpointName="async-fail", InputLocation=f"s3://{bucket}/no/such/input"
    )
    reason = wait_object(s3_server, missing["FailureLocation"])["Body"].read()
    assert b"Could not read InputLocation" in reason


def test_the_wrong_kind_of_invocation_is_a_validation_error(
    server: PolyhostProcess,
    s3_server: MotoS3,  # noqa: F811
    bucket: str,
) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    deploy_async(sagemaker, "async-only", bucket)
    with pytest.raises(ClientError) as refused:
        runtime.invoke_endpoint(EndpointName="async-only", Body=b"x")
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert "InvokeEndpointAsync" in refused.value.response["Error"]["Message"]
    create_model(sagemaker, "sync-only", [echo_container("sync-only")])
    sagemaker.create_endpoint_config(
        EndpointConfigName="sync-only",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": "sync-only", "InitialInstanceCount": 1}
        ],
    )
    sagemaker.create_endpoint(EndpointName="sync-only", EndpointConfigName="sync-only")
    assert wait_status(sagemaker, "sync-only")["EndpointStatus"] == "InService"
    with pytest.raises(ClientError) as refused:
        runtime.invoke_endpoint_async(
            EndpointName="sync-only", InputLocation=f"s3://{bucket}/whatever"
        )
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_queued_requests_survive_kill_9_and_are_answered_once(
    start_own_server: ServerFactory,
    s3_server: MotoS3,  # noqa: F811
    bucket: str,
    tmp_path: Path,
) -> None:
    server = start_own_server(env=s3_server.env())
    sagemaker, runtime = server.sagemaker(), server.runtime()
    deploy_async(sagemaker, "async-crash", bucket)
    release = tmp_path / "release"
    ids = [f"req-{i}" for i in range(4)]
    for inference_id in ids:
        runtime.invoke_endpoint_async(
            EndpointName="async-crash",
            InputLocation=put_input(s3_server, bucket, inference_id.encode()),
            InferenceId=inference_id,
            CustomAttributes=f"hold={release}",
        )
    server.kill9()
    server.restart()
    release.touch()
    for inference_id in ids:
        location = f"s3://{bucket}/async-crash/out/{inference_id}.out"
        body = wait_object(s3_server, location, timeout=60)["Body"].read()
        assert body == b"async-crash:" + inference_id.encode()
    time.sleep(0.5)
    for inference_id in ids:
        path = f"/{bucket}/async-crash/out/{inference_id}.out"
        assert s3_server.count_requests("PUT", path) == 1, inference_id


def test_invocation_timeout_seconds_bounds_the_container_call_not_the_servers_timeout(
    start_server: ServerFactory,
    s3_server: MotoS3,  # noqa: F811
    bucket: str,
) -> None:
    """InvocationTimeoutSeconds may be longer than the server's --invocation-timeout (an
    asynchronous request may run up to an hour), and a shorter one still cuts the call."""
    short = start_server("--invocation-timeout", "1", env=s3_server.env(), name="async-timeout")
    sagemaker, runtime = short.sagemaker(), short.runtime()
    deploy_async(sagemaker, "async-slow", bucket)
    long_enough = runtime.invoke_endpoint_async(
        EndpointName="async-slow",
        InputLocation=put_input(s3_server, bucket, b"slow"),
        CustomAttributes="sleep=2",
        InvocationTimeoutSeconds=30,
    )
    written = wait_object(s3_server, long_enough["OutputLocation"], timeout=30)
    assert written["Body"].read() == b"async-slow:slow"
    too_short = runtime.invoke_endpoint_async(
        EndpointName="async-slow",
        InputLocation=put_input(s3_server, bucket, b"slower"),
        CustomAttributes="sleep=4",
        InvocationTimeoutSeconds=2,
    )
    reason = wait_object(s3_server, too_short["FailureLocation"], timeout=30)["Body"].read()
    assert b"ModelInvocationTimeExceeded" in reason or b"timed out" in reason, reason
