"""`Gate.allow_invocation`: the one check of an invocation, and what it remembers.

It remembers the invocations it allowed, keyed by everything the decision can depend on; these
tests change each of those things after an allowed call and check the answer follows, and that
a principal whose policies read the time, a denial and a reload are never answered from memory.
The requests are signed by botocore, and each check runs with the compiled SigV4 path and
without it (every check in Python), which must answer the same.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from polyhost.auth import gate as gate_module
from polyhost.auth.authorizer import Authorizer
from polyhost.auth.gate import Gate
from polyhost.auth.guard import AccessControl
from polyhost.auth.principals import load_principals
from polyhost.auth.sigv4 import SigV4Verifier, compiled_verifier_available
from polyhost.errors import ServiceError
from polyhost.settings import Settings
from tests.auth.helpers import ACCOUNT, AKID, REGION, SECRET, sign

ENDPOINT = "My-Endpoint"
ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/my-endpoint"
BODY = b'{"instances": [1, 2, 3]}'
Request = tuple[bytes, list[tuple[bytes, bytes]]]  # (url, header pairs) as received


def invoke_only(condition: dict[str, Any] | None = None, resource: str = ARN) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Action": "sagemaker:InvokeEndpoint",
        "Resource": resource,
    }
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def write(path: Path, *policies: dict[str, Any], secret: str = SECRET) -> Path:
    doc = {
        "principals": [
            {
                "name": "alice",
                "access_key_id": AKID,
                "secret_access_key": secret,
                "policies": list(policies),
            }
        ]
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def gate_of(path: Path, *, compiled: bool = True) -> Gate:
    """A gate over the principals file `path`; `compiled=False`: SigV4 in Python only."""
    settings = Settings(region=REGION, account_id=ACCOUNT, auth_file=path)
    if compiled:
        return Gate(settings, AccessControl.load(path, region=REGION))
    principals = load_principals(path)
    verifier = SigV4Verifier(principals.lookup, region=REGION, compiled=False)
    return Gate(settings, AccessControl(principals, verifier, Authorizer()))


def signed(endpoint: str = ENDPOINT, *, secret: str = SECRET, body: bytes = BODY) -> Request:
    """An invocation signed now by botocore, as the runtime adapter receives it."""
    wire = sign(
        f"/endpoints/{endpoint}/invocations",
        body=body,
        secret=secret,
        when=dt.datetime.now(dt.UTC),
    )
    pairs = [(name.lower().encode(), value.encode()) for name, value in wire.headers]
    return wire.path.encode(), pairs


def refusal(
    gate: Gate,
    request: Request | None = None,
    endpoint: str = ENDPOINT,
    *,
    source_ip: str | None = "127.0.0.1",
    target_container_hostname: str | None = None,
    target_model: str | None = None,
    target_variant: str | None = None,
) -> str:
    """The code `allow_invocation` refuses with, "" when it allows."""
    url, headers = request or signed(endpoint)
    try:
        gate.allow_invocation(
            url,
            headers,
            BODY,
            endpoint,
            source_ip,
            target_container_hostname,
            target_model,
            target_variant,
        )
    except ServiceError as error:
        return error.code
    return ""


def allowed(gate: Gate, endpoint: str = ENDPOINT, **keys: Any) -> bool:
    code = refusal(gate, None, endpoint, **keys)
    assert code in ("", "AccessDeniedException"), code
    return code == ""


def count_decisions(gate: Gate, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """How many policy decisions the gate made from now on (remembered answers make none)."""
    decided = 0
    authorize = gate.authorize

    def counting(*args: Any, **kwargs: Any) -> None:
        nonlocal decided
        decided += 1
        authorize(*args, **kwargs)

    monkeypatch.setattr(gate, "authorize", counting)
    return lambda: decided


@pytest.fixture(params=[True, False], ids=["compiled", "python"])
def compiled(request: pytest.FixtureRequest) -> bool:
    if request.param and not compiled_verifier_available():
        pytest.skip("no compiled SigV4 path here (POLYHOST_NO_EXTENSIONS or not built)")
    return bool(request.param)


def test_each_condition_key_is_decided_apart_after_an_allowed_call(
    tmp_path: Path, compiled: bool
) -> None:
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
        ),
        compiled=compiled,
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


def test_an_allowed_invocation_is_decided_once_and_a_denial_every_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = gate_of(write(tmp_path / "p.json", invoke_only()))
    decisions = count_decisions(gate, monkeypatch)
    for _ in range(3):
        assert allowed(gate)
    assert decisions() == 1
    for _ in range(3):
        assert not allowed(gate, "Other-Endpoint")
    assert decisions() == 4


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
    monkeypatch.setattr(gate_module, "ALLOWED_INVOCATIONS_MAX", 8)
    gate = gate_of(write(tmp_path / "p.json", invoke_only()))
    decisions = count_decisions(gate, monkeypatch)
    for i in range(50):
        assert allowed(gate, source_ip=f"10.0.0.{i}")
    assert decisions() == 50
    assert allowed(gate, source_ip="10.0.0.49")  # among the last 8: remembered
    assert decisions() == 50
    assert allowed(gate, source_ip="10.0.0.0")  # forgotten when the set started over
    assert decisions() == 51


def test_a_bad_signature_is_refused_before_any_policy_is_read(
    tmp_path: Path, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = gate_of(write(tmp_path / "p.json", invoke_only()), compiled=compiled)
    decisions = count_decisions(gate, monkeypatch)
    url, headers = signed()
    unsigned = [(name, value) for name, value in headers if name != b"authorization"]
    assert refusal(gate, (url, unsigned)) == "MissingAuthenticationTokenException"
    assert refusal(gate, signed(secret="not-" + SECRET)) == "InvalidSignatureException"
    assert refusal(gate, (url + b"?tampered=1", headers)) == "InvalidSignatureException"
    assert decisions() == 0
    assert refusal(gate, (url, headers)) == ""


def test_the_compiled_path_follows_reloads(tmp_path: Path) -> None:
    """After a reload only the new file's keys verify, on the compiled path as on the other."""
    path = write(tmp_path / "p.json", invoke_only())
    gate = gate_of(path)
    assert refusal(gate, signed()) == ""
    write(path, invoke_only(), secret="rotated-" + SECRET)
    assert gate.reload()
    assert refusal(gate, signed()) == "InvalidSignatureException"
    assert refusal(gate, signed(secret="rotated-" + SECRET)) == ""


def test_without_an_auth_file_every_invocation_is_allowed() -> None:
    gate = Gate(Settings(region=REGION, account_id=ACCOUNT), None)
    assert not gate.enabled
    url, headers = signed()
    gate.allow_invocation(url, [], BODY, ENDPOINT, None, None, None, None)
    gate.allow_invocation(url, headers, BODY, ENDPOINT, "127.0.0.1", None, None, None)
    assert not gate.reload()
    assert not gate.enabled
