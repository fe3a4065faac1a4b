"""A Deny on a resource's ARN holds for its tags whichever way the tag request spells the ARN.

A real server with `--auth-file`, real signed boto3 clients. The tenant may tag anything but
the operator's `ep1` (explicit Denies on model/ep1 and endpoint-config/ep1). The attack run
bypassed that Deny with `ResourceArn ...:endpoint/EP1`: the control plane finds resources by
name regardless of case, while the Deny compared the ARN as sent. SageMaker's ARNs are all
lowercase, so the ARN authorised is the lowercased one: the ARN of the resource actually found.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.endpoints import create_config, create_model, echo_container
from tests.support.errors import client_error
from tests.support.server import ACCOUNT, REGION, PolyhostProcess, write_image_config

ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
KINDS = ["model", "endpoint-config"]


def principal(name: str, key: str, statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "access_key_id": key,
        "secret_access_key": f"{name}-secret-key-0123456789abcdef",
        "policies": [{"Version": "2012-10-17", "Statement": statements}],
    }


PRINCIPALS = {
    "principals": [
        principal(
            "admin", "AKIAADMIN00000000001", [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
        ),
        principal(
            "tenant",
            "AKIATENANT0000000001",
            [
                {
                    "Effect": "Allow",
                    "Action": ["sagemaker:AddTags", "sagemaker:ListTags", "sagemaker:DeleteTags"],
                    "Resource": "*",
                },
                {
                    "Effect": "Deny",
                    "Action": "sagemaker:*",
                    "Resource": [f"{ARN}:{kind}/ep1" for kind in KINDS],
                },
            ],
        ),
    ]
}


def client(server: PolyhostProcess, who: str) -> Any:
    (entry,) = [p for p in PRINCIPALS["principals"] if p["name"] == who]
    return boto3.client(
        "sagemaker",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=entry["access_key_id"],
        aws_secret_access_key=entry["secret_access_key"],
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolyhostProcess]:
    base = tmp_path_factory.mktemp("tenant-tags")
    auth = base / "principals.json"
    auth.write_text(json.dumps(PRINCIPALS), encoding="utf-8")
    proc = PolyhostProcess(
        state_dir=base / "state",
        image_config=write_image_config(Path(base / "images.toml")),
        extra_args=["--auth-file", str(auth)],
    ).start()
    admin = client(proc, "admin")
    for name in ("ep1", "ep2"):
        create_model(admin, name, [echo_container("one")])
        create_config(admin, name, [("AllTraffic", name, 1, 1.0)])
        for kind in KINDS:
            admin.add_tags(
                ResourceArn=f"{ARN}:{kind}/{name}", Tags=[{"Key": "owner", "Value": "op"}]
            )
    yield proc
    proc.stop()


def spellings(kind: str, name: str) -> list[str]:
    """The resource's ARN spelt as the control plane would still find it."""
    return [
        f"{ARN}:{kind}/{name.upper()}",
        f"{ARN}:{kind}/{name.capitalize()}",
        f"arn:aws:sagemaker:{REGION.upper()}:{ACCOUNT}:{kind}/{name}",
        f"ARN:AWS:SAGEMAKER:{REGION}:{ACCOUNT}:{kind}/{name}",
    ]


def tags(server: PolyhostProcess, kind: str, name: str) -> list[dict[str, str]]:
    found: list[dict[str, str]] = client(server, "admin").list_tags(
        ResourceArn=f"{ARN}:{kind}/{name}"
    )["Tags"]
    return found


def denied(call: Any, **params: Any) -> str:
    with pytest.raises(ClientError) as raised:
        call(**params)
    code, status, message = client_error(raised)
    assert (code, status) == ("AccessDeniedException", 403), message
    return message


@pytest.mark.parametrize("kind", KINDS)
def test_a_deny_holds_whatever_the_case_of_the_arn(server: PolyhostProcess, kind: str) -> None:
    tenant = client(server, "tenant")
    for arn in spellings(kind, "ep1"):
        message = denied(tenant.add_tags, ResourceArn=arn, Tags=[{"Key": "owner", "Value": "me"}])
        # The refusal names the ARN authorised: the resource's own, lowercase.
        assert f"{ARN}:{kind}/ep1" in message, message
        denied(tenant.list_tags, ResourceArn=arn)
        denied(tenant.delete_tags, ResourceArn=arn, TagKeys=["owner"])
    assert tags(server, kind, "ep1") == [{"Key": "owner", "Value": "op"}]


@pytest.mark.parametrize("kind", KINDS)
def test_allowed_resources_are_still_tagged_under_any_case(
    server: PolyhostProcess, kind: str
) -> None:
    tenant = client(server, "tenant")
    arn = spellings(kind, "ep2")[0]
    tenant.add_tags(ResourceArn=arn, Tags=[{"Key": "team", "Value": "t"}])
    assert {"Key": "team", "Value": "t"} in tenant.list_tags(ResourceArn=arn)["Tags"]
    tenant.delete_tags(ResourceArn=arn, TagKeys=["team"])
    assert tags(server, kind, "ep2") == [{"Key": "owner", "Value": "op"}]
