"""`Gate.authorize_invocation`: what it remembers never changes an answer.

It remembers the invocations it allowed, keyed by everything the decision can depend on; these
tests change each of those things after an allowed call and check the answer follows, and that
a principal whose policies read the time, a denial and a reload are never answered from memory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from polyhost.auth.guard import AccessControl
from polyhost.auth.principals import Principal
from polyhost.auth.sigv4 import compiled_verifier_available
from polyhost.errors import ServiceError
from polyhost.http import auth as http_auth
from polyhost.http.auth import Gate
from polyhost.settings import Settings
from tests.auth.helpers import ACCOUNT, AKID, REGION, SECRET

ENDPOINT = "My-Endpoint"
ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/my-endpoint"


def invoke_only(condition: dict[str, Any] | None = None, resource: str = ARN) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Action": "sagemaker:InvokeEndpoint",
        "Resource": resource,
    }
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def write(path: Path, *policies: dict[str, Any]) -> Path:
    doc = {
        "principals": [
            {
                "name": "alice",
                "access_key_id": AKID,
                "secret_access_key": SECRET,
                "policies": list(policies),
            }
        ]
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def gate_of(path: Path) -> Gate:
    settings = Settings(region=REGION, account_id=ACCOUNT, auth_file=path)
    return Gate(settings, AccessControl.load(path, region=REGION))


def alice(gate: Gate) -> Principal:
    assert gate.control is not None
    return gate.control.principals.by_name["alice"]


def allowed(gate: Gate, endpoint: str = ENDPOINT, **keys: Any) -> bool:
    arguments: dict[str, Any] = {
        "source_ip": "127.0.0.1",
        "target_container_hostname": None,
        "target_model": None,
        "target_variant": None,
    }
    arguments.update(keys)
    try:
        gate.authorize_invocation(alice(gate), endpoint, **arguments)
    except ServiceError as error:
        assert error.code == "AccessDeniedException"
        return False
    return True


def test_each_condition_key_is_decided_apart_after_an_allowed_call(tmp_path: Path) -> None:
    gate = gate_of(
        write(
            tmp_path / "p.json",
            invoke_only(
                {
                    "StringLike": {"sagemaker:TargetContainerHostname": "customIps*"},
                    "StringEqualsIfExists": {
                        "sagemaker:TargetModel": "a.tar.gz",
                        "sagemaker:TargetVariant": "v1",
                    },
                    "IpAddress": {"aws:SourceIp": "127.0.0.0/24"},
                }
            ),
        )
    )
    base = {"target_container_hostname": "customIps1"}
    assert allowed(gate, **base)
    assert allowed(gate, **base)  # remembered, still allowed
    assert not allowed(gate, target_container_hostname="special1")
    assert not allowed(gate, **base, target_model="b.tar.gz")
    assert not allowed(gate, **base, target_variant="v2")
    assert not allowed(gate, **base, source_ip="127.0.1.1")
    assert not allowed(gate, "Other-Endpoint", **base)
    assert allowed(gate, **base)


def test_a_denial_is_never_remembered_and_a_reload_forgets_every_allowance(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "p.json", invoke_only())
    gate = gate_of(path)
    assert allowed(gate)
    write(path, invoke_only(resource=f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/other"))
    assert gate.reload()
    assert not allowed(gate)
    assert not allowed(gate)
    write(path, invoke_only())
    assert gate.reload()
    assert allowed(gate)


def test_a_principal_whose_policy_reads_the_time_is_decided_every_time(tmp_path: Path) -> None:
    deadline = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(time.time()) + 2))
    gate = gate_of(
        write(tmp_path / "p.json", invoke_only({"DateLessThan": {"aws:CurrentTime": deadline}}))
    )
    assert allowed(gate)
    time.sleep(max(0.0, int(time.time()) + 3 - time.time()))  # past the deadline's second
    assert not allowed(gate)


def test_what_it_remembers_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_auth, "ALLOWED_INVOCATIONS_MAX", 8)
    gate = gate_of(write(tmp_path / "p.json", invoke_only()))
    for i in range(50):
        assert allowed(gate, source_ip=f"10.0.0.{i}")
    assert len(gate.allowed_invocations) <= 8
    assert allowed(gate)


def test_the_compiled_acceptor_follows_reloads(tmp_path: Path) -> None:
    path = write(tmp_path / "p.json", invoke_only())
    gate = gate_of(path)
    first = gate.accept_invocation
    if not compiled_verifier_available():  # POLYHOST_NO_EXTENSIONS: every check in Python
        assert first is None
        return
    assert first is not None
    assert gate.reload()
    assert gate.accept_invocation is not None and gate.accept_invocation is not first
