"""InvokeEndpointWithResponseStream under access control: a real server with --auth-file and
signed boto3 clients. Streaming is its own IAM action, decided with InvokeEndpoint's condition
keys; a refusal comes before any container is called, in the runtime's rest-json shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from polyhost.auth.commands import CommandError, check
from tests.support.endpoints import create_config, create_model, echo_container, wait_status
from tests.support.errors import client_error
from tests.support.server import ACCOUNT, REGION, PolyhostProcess, ServerFactory

ENDPOINT = "Stream-Auth"
ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT.lower()}"
STREAM = "sagemaker:InvokeEndpointWithResponseStream"


def allow(actions: list[str], **condition: list[str]) -> dict[str, Any]:
    statement: dict[str, Any] = {"Effect": "Allow", "Action": actions, "Resource": ARN}
    if condition:
        statement["Condition"] = {"StringLike": condition}
    return {"Version": "2012-10-17", "Statement": [statement]}


POLICIES: dict[str, dict[str, Any]] = {
    "admin": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    },
    "invoker": allow(["sagemaker:InvokeEndpoint"]),
    "streamer": allow([STREAM], **{"sagemaker:TargetContainerHostname": ["open*"]}),
    "both": allow(["sagemaker:InvokeEndpoint*"]),
}
KEYS = {
    name: (f"AKIA{name.upper():0<16}"[:20], f"{name}-secret-key-0123456789abcdef")
    for name in POLICIES
}


@pytest.fixture(scope="module")
def auth_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "principals.json"
    principals = [
        {
            "name": name,
            "access_key_id": KEYS[name][0],
            "secret_access_key": KEYS[name][1],
            "policies": [policy],
        }
        for name, policy in POLICIES.items()
    ]
    path.write_text(json.dumps({"principals": principals}), encoding="utf-8")
    return path


def client(server: PolyhostProcess, service: str, who: str) -> Any:
    key, secret = KEYS[who]
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def server(start_server: ServerFactory, auth_file: Path) -> PolyhostProcess:
    proc = start_server("--auth-file", str(auth_file), name="streamauth")
    admin = client(proc, "sagemaker", "admin")
    create_model(
        admin, ENDPOINT, [echo_container("open1"), echo_container("closed")], mode="Direct"
    )
    create_config(admin, ENDPOINT, [("AllTraffic", ENDPOINT, 1, 1.0)])
    admin.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=ENDPOINT)
    assert wait_status(admin, ENDPOINT)["EndpointStatus"] == "InService"
    return proc


def stream(server: PolyhostProcess, who: str, hostname: str = "open1", **kwargs: Any) -> str:
    runtime = client(server, "sagemaker-runtime", who)
    try:
        answer = runtime.invoke_endpoint_with_response_stream(
            EndpointName=ENDPOINT, Body=b"x", TargetContainerHostname=hostname, **kwargs
        )
    except ClientError as error:
        code, status, message = client_error(error)
        if code == "AccessDeniedException":
            assert status == 403 and STREAM in message
        return code
    data = b"".join(event["PayloadPart"]["Bytes"] for event in answer["Body"])
    assert data == f"{hostname}:x".encode()
    return "allowed"


@pytest.mark.parametrize(
    ("who", "hostname", "expected"),
    [
        ("admin", "closed", "allowed"),
        ("invoker", "open1", "AccessDeniedException"),  # InvokeEndpoint is not the action
        ("streamer", "open1", "allowed"),
        ("streamer", "closed", "AccessDeniedException"),  # the condition key is the hostname
        ("both", "closed", "allowed"),  # sagemaker:InvokeEndpoint* covers both actions
    ],
)
def test_streaming_is_its_own_action(
    server: PolyhostProcess, who: str, hostname: str, expected: str
) -> None:
    assert stream(server, who, hostname) == expected


def test_the_streamer_may_not_invoke_whole(server: PolyhostProcess) -> None:
    runtime = client(server, "sagemaker-runtime", "streamer")
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=b"x", TargetContainerHostname="open1")
    assert client_error(excinfo)[0] == "AccessDeniedException"


def test_an_unsigned_or_badly_signed_stream_is_refused(server: PolyhostProcess) -> None:
    runtime = boto3.client(
        "sagemaker-runtime",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=KEYS["admin"][0],
        aws_secret_access_key="not-the-secret",
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(ClientError) as excinfo:
        # A header the operation refuses: the signature is still refused first.
        runtime.invoke_endpoint_with_response_stream(
            EndpointName=ENDPOINT, Body=b"x", SessionId="s"
        )
    code, status, _ = client_error(excinfo)
    assert status == 403 and code != "ValidationError"


def test_a_signed_stream_with_a_session_id_is_a_validation_error(server: PolyhostProcess) -> None:
    assert stream(server, "admin", SessionId="s") == "ValidationError"


def test_auth_check_decides_the_streaming_action(auth_file: Path) -> None:
    context = ["sagemaker:TargetContainerHostname=open2"]
    assert check(auth_file, "streamer", STREAM, ARN, context).allowed
    assert not check(auth_file, "invoker", STREAM, ARN, context).allowed
    assert check(auth_file, "both", STREAM, ARN, context).allowed
    assert not check(
        auth_file, "streamer", STREAM, ARN, ["sagemaker:TargetContainerHostname=x"]
    ).allowed
    with pytest.raises(CommandError, match="not a SageMaker runtime action"):
        check(auth_file, "streamer", "sagemaker:InvokeEndpointWithResponseStreaming", ARN, [])
