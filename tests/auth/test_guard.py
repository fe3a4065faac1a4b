"""End to end without HTTP: load a file, verify a botocore-signed request, decide, reload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyhost.auth.actions import invoke_endpoint_target
from polyhost.auth.context import request_context
from polyhost.auth.errors import PolicyError
from polyhost.auth.guard import AccessControl
from tests.auth.helpers import ACCOUNT, REGION, SIGNED_AT, capture_boto3, entry

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "OwnEndpoints",
            "Effect": "Allow",
            "Action": "sagemaker:InvokeEndpoint",
            "Resource": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/${{aws:username}}-*",
        },
        {
            "Sid": "NoSpecial",
            "Effect": "Deny",
            "Action": "sagemaker:InvokeEndpoint",
            "Resource": "*",
            "Condition": {"StringLike": {"sagemaker:TargetContainerHostname": "special*"}},
        },
    ],
}


def write(path: Path, policies: list[object]) -> Path:
    path.write_text(json.dumps({"principals": [entry(policies=policies)]}))
    return path


def decide(guard: AccessControl, endpoint: str, hostname: str | None = None) -> str:
    params: dict[str, object] = {"EndpointName": endpoint, "Body": b"{}"}
    if hostname:
        params["TargetContainerHostname"] = hostname
    wire = capture_boto3("sagemaker-runtime", "invoke_endpoint", params)
    verified = guard.verifier.verify(
        wire.method, wire.path, wire.query, wire.headers, services={"sagemaker"}, body=wire.body
    )
    header = dict((n.lower(), v) for n, v in wire.headers)
    context = request_context(
        username=verified.principal.name,
        source_ip="127.0.0.1",
        now=SIGNED_AT.timestamp(),
        target_container_hostname=header.get("x-amzn-sagemaker-target-container-hostname"),
    )
    target = invoke_endpoint_target(endpoint, region=REGION, account_id=ACCOUNT)
    return guard.authorizer.decide(
        verified.principal, target.action, target.resource, context
    ).explain()


def test_verify_then_decide_then_reload(tmp_path: Path) -> None:
    path = write(tmp_path / "principals.json", [POLICY])
    guard = AccessControl.load(path, region=REGION, clock=SIGNED_AT.timestamp)
    assert (
        decide(guard, "Alice-Dev")
        == 'allowed: allowed by policy 0, statement 0 (Sid "OwnEndpoints")'
    )
    assert decide(guard, "Alice-Dev", "special1") == (
        'explicitDeny: explicitly denied by policy 0, statement 1 (Sid "NoSpecial")'
    )
    assert decide(guard, "bob-dev") == "implicitDeny: no statement allows this request"

    write(path, [])
    reloaded = AccessControl.load(path, region=REGION, clock=SIGNED_AT.timestamp)
    assert decide(reloaded, "Alice-Dev") == "implicitDeny: no statement allows this request"
    assert decide(guard, "Alice-Dev").startswith("allowed")  # the old state is untouched


def test_a_bad_file_leaves_the_running_state_alone(tmp_path: Path) -> None:
    path = write(tmp_path / "principals.json", [POLICY])
    guard = AccessControl.load(path, region=REGION, clock=SIGNED_AT.timestamp)
    path.write_text("{ not json")
    with pytest.raises(PolicyError):
        AccessControl.load(path, region=REGION)
    assert decide(guard, "Alice-Dev").startswith("allowed")
