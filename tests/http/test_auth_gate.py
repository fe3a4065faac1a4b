"""The gate on the invocation path, in process: `RuntimeAdapter.answer` with access control on.

What the gate decides is tested in tests/auth/test_gate.py; here the question is what reaches
the wire, and in which order: a signature is checked before anything else the request carries
(an unsigned request is refused as unsigned whatever else is wrong with it), a dropped body is
refused for its size (no signature could match it), a denial never reaches a container. Each
case runs with the compiled SigV4 path and without it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest

from polyhost.auth.authorizer import Authorizer
from polyhost.auth.gate import Gate
from polyhost.auth.guard import AccessControl
from polyhost.auth.principals import load_principals
from polyhost.auth.sigv4 import SigV4Verifier, compiled_verifier_available
from polyhost.http.services.runtime import RuntimeAdapter
from polyhost.router.router import Router
from polyhost.settings import MiB, Settings
from tests.auth.helpers import ACCOUNT, AKID, REGION, SECRET, sign
from tests.support.fake_pool import FakePool, container_route, endpoint_route, variant_route

BODY = b'{"instances": [1, 2, 3]}'
Headers = list[tuple[bytes, bytes]]


@pytest.fixture(params=[True, False], ids=["compiled", "python"])
def gate(request: pytest.FixtureRequest, tmp_path: Path) -> Gate:
    """alice, allowed to invoke endpoint `ep` only."""
    if request.param and not compiled_verifier_available():
        pytest.skip("no compiled SigV4 path here (POLYHOST_NO_EXTENSIONS or not built)")
    path = tmp_path / "principals.json"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "sagemaker:InvokeEndpoint",
                "Resource": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/ep",
            }
        ],
    }
    entry = {"name": "alice", "access_key_id": AKID, "secret_access_key": SECRET}
    path.write_text(json.dumps({"principals": [{**entry, "policies": [policy]}]}), "utf-8")
    principals = load_principals(path)
    verifier = SigV4Verifier(principals.lookup, region=REGION, compiled=bool(request.param))
    settings = Settings(region=REGION, account_id=ACCOUNT, auth_file=path)
    return Gate(settings, AccessControl(principals, verifier, Authorizer()))


def adapter(gate: Gate, *names: str) -> tuple[RuntimeAdapter, FakePool]:
    """A runtime adapter behind `gate`, over endpoints `names` served by one fake pool."""
    pool = FakePool("model")
    router = Router(Settings(invocation_timeout_s=2.0))
    for name in names:
        container = container_route("model", pool, variant="Main")
        router.publish(endpoint_route(name, variant_route("Main", (container,))))
    return RuntimeAdapter(router, max_body_bytes=6 * MiB, gate=gate), pool


def signed(endpoint: str, **headers: str) -> tuple[bytes, Headers]:
    """An invocation signed now by botocore (with `headers`), as the adapter receives it."""
    wire = sign(
        f"/endpoints/{endpoint}/invocations",
        body=BODY,
        headers={"Content-Type": "application/json", **headers},
        when=dt.datetime.now(dt.UTC),
    )
    pairs = [(name.lower().encode(), value.encode()) for name, value in wire.headers]
    return wire.path.encode(), pairs


def code(
    adapter: RuntimeAdapter, endpoint: str, url: bytes, headers: Headers, body: bytes | None = BODY
) -> tuple[int, str]:
    """Status and x-amzn-ErrorType ("" when none) of the adapter's answer."""
    status, out, _ = asyncio.run(adapter.answer(endpoint, headers, body, url=url, peer="127.0.0.1"))
    error_types = [value.decode() for name, value in out if name == b"x-amzn-errortype"]
    return status, "".join(error_types)


def unsigned(headers: Headers) -> Headers:
    return [(name, value) for name, value in headers if name != b"authorization"]


def test_a_signed_allowed_invocation_reaches_its_container(gate: Gate) -> None:
    runtime, pool = adapter(gate, "ep")
    url, headers = signed("ep")
    assert code(runtime, "ep", url, headers) == (200, "")
    assert code(runtime, "ep", url, headers) == (200, "")  # remembered: the same answer
    assert [call.body for call in pool.calls] == [BODY, BODY]


def test_an_unsigned_request_is_refused_as_unsigned_before_its_headers_are_read(
    gate: Gate,
) -> None:
    runtime, pool = adapter(gate, "ep")
    url, headers = signed("ep", **{"X-Amzn-SageMaker-Custom-Attributes": "x" * 1025})
    refused = (403, "MissingAuthenticationTokenException")
    assert code(runtime, "ep", url, unsigned(headers)) == refused
    assert code(runtime, "ep", url, headers) == (400, "ValidationError")
    url, headers = signed("ep")
    assert code(runtime, "ep", url, unsigned(headers)) == refused
    assert code(runtime, "ep", url + b"?changed=1", headers) == (403, "InvalidSignatureException")
    assert pool.calls == []


def test_a_dropped_body_is_refused_for_its_size_signed_or_not(gate: Gate) -> None:
    runtime, pool = adapter(gate, "ep")
    url, headers = signed("ep")
    assert code(runtime, "ep", url, headers, None) == (400, "ValidationError")
    assert code(runtime, "ep", url, unsigned(headers), None) == (400, "ValidationError")
    assert pool.calls == []


def test_a_denied_invocation_never_reaches_a_container(gate: Gate) -> None:
    runtime, pool = adapter(gate, "ep", "other")
    url, headers = signed("other")
    assert code(runtime, "other", url, headers) == (403, "AccessDeniedException")
    assert code(runtime, "other", url, headers) == (403, "AccessDeniedException")
    assert pool.calls == []
