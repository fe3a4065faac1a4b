"""Access control end to end: a real server with --auth-file, real signed boto3 clients.

The policy language itself is tested table by table in tests/auth/; here the question is
whether the wire holds: every route demands a valid signature, refusals come back in the shape
of the protocol the request used, and the SageMaker guide's per-container policies decide
invocations exactly as IAM would.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.support.endpoints import create_config, create_model, echo_container, wait_status
from tests.support.errors import client_error
from tests.support.server import (
    ACCOUNT,
    REGION,
    PolyhostProcess,
    ServerFactory,
)
from tests.support.waiting import eventually

ENDPOINT = "MultiModel-Endpoint"  # capitals: policies name it by its lowercased ARN
ENDPOINT_ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:endpoint/{ENDPOINT.lower()}"
HOSTNAMES = ["customIps1", "common", "CustomIps2", "myCustomIps", "special1", "notspecial"]


def principal(name: str, key: str, policies: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "access_key_id": key,
        "secret_access_key": f"{name}-secret-key-0123456789abcdef",
        "policies": policies,
    }


def invoke_policy(effect: str, patterns: list[str], resource: str = ENDPOINT_ARN) -> dict[str, Any]:
    return {
        "Action": ["sagemaker:InvokeEndpoint"],
        "Effect": effect,
        "Resource": resource,
        "Condition": {"StringLike": {"sagemaker:TargetContainerHostname": patterns}},
    }


# The two policies of SageMaker's guide ("Secure multi-container endpoints"), exactly, with the
# guide's placeholder ARN replaced by this endpoint's.
GUIDE_ALLOW_LIST = {
    "Version": "2012-10-17",
    "Statement": [invoke_policy("Allow", ["customIps*", "common*"])],
}
GUIDE_DENY_SPECIAL = {
    "Version": "2012-10-17",
    "Statement": [invoke_policy("Allow", ["*"]), invoke_policy("Deny", ["special*"])],
}
ADMIN = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
SCOPED = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": ["sagemaker:Describe*", "sagemaker:InvokeEndpoint"],
            "Resource": ENDPOINT_ARN,
        }
    ],
}

PRINCIPALS = {
    "principals": [
        principal("admin", "AKIAADMIN00000000001", [ADMIN]),
        principal("analyst", "AKIAANALYST000000001", [GUIDE_ALLOW_LIST]),
        principal("operator", "AKIAOPERATOR00000001", [GUIDE_DENY_SPECIAL]),
        principal("scoped", "AKIASCOPED0000000001", [SCOPED]),
    ]
}
SECRETS = {
    p["name"]: (p["access_key_id"], p["secret_access_key"]) for p in PRINCIPALS["principals"]
}


def client(server: PolyhostProcess, service: str, who: str, **overrides: Any) -> Any:
    key, secret = SECRETS[who]
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=overrides.pop("region_name", REGION),
        aws_access_key_id=overrides.pop("aws_access_key_id", key),
        aws_secret_access_key=overrides.pop("aws_secret_access_key", secret),
        config=Config(retries={"max_attempts": 1}),
        **overrides,
    )


@pytest.fixture(scope="module")
def auth_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "principals.json"
    path.write_text(json.dumps(PRINCIPALS), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(start_server: ServerFactory, auth_file: Path) -> PolyhostProcess:
    proc = start_server("--auth-file", str(auth_file), name="authserver")
    admin = client(proc, "sagemaker", "admin")
    create_model(admin, ENDPOINT, [echo_container(h) for h in HOSTNAMES], mode="Direct")
    create_config(admin, ENDPOINT, [("AllTraffic", ENDPOINT, 1, 1.0)])
    admin.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=ENDPOINT)
    assert wait_status(admin, ENDPOINT)["EndpointStatus"] == "InService"
    return proc


def outcome(
    server: PolyhostProcess, who: str, hostname: str | None, endpoint: str = ENDPOINT
) -> str:
    runtime = client(server, "sagemaker-runtime", who)
    kwargs: dict[str, Any] = {"EndpointName": endpoint, "Body": b"x"}
    if hostname is not None:
        kwargs["TargetContainerHostname"] = hostname
    try:
        answer = runtime.invoke_endpoint(**kwargs)
    except ClientError as error:
        code, status, message = client_error(error)
        if code == "AccessDeniedException":
            assert status == 403
            assert "sagemaker:InvokeEndpoint" in message and who in message
            return "explicitDeny" if "explicit deny" in message else "implicitDeny"
        return code
    answer["Body"].read()
    return "allowed"


@pytest.mark.parametrize(
    ("hostname", "analyst", "operator"),
    [
        ("customIps1", "allowed", "allowed"),
        ("common", "allowed", "allowed"),
        ("CustomIps2", "implicitDeny", "allowed"),  # StringLike is case-sensitive
        ("myCustomIps", "implicitDeny", "allowed"),  # the pattern matches the whole name
        ("special1", "implicitDeny", "explicitDeny"),
        ("notspecial", "implicitDeny", "allowed"),
        (None, "implicitDeny", "implicitDeny"),  # a missing key makes StringLike false
    ],
)
def test_the_guides_two_policies_decide_per_container(
    server: PolyhostProcess, hostname: str | None, analyst: str, operator: str
) -> None:
    assert outcome(server, "analyst", hostname) == analyst
    assert outcome(server, "operator", hostname) == operator


def test_a_policy_on_the_lowercased_arn_covers_an_endpoint_named_with_capitals(
    server: PolyhostProcess,
) -> None:
    assert outcome(server, "scoped", "special1") == "allowed"
    described = client(server, "sagemaker", "scoped").describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointArn"] == ENDPOINT_ARN
    with pytest.raises(ClientError) as excinfo:
        client(server, "sagemaker", "scoped").describe_endpoint(EndpointName="another")
    assert client_error(excinfo)[:2] == ("AccessDeniedException", 403)


def test_invoke_only_principals_are_denied_the_control_plane(server: PolyhostProcess) -> None:
    for who in ("analyst", "operator", "scoped"):
        sagemaker = client(server, "sagemaker", who)
        with pytest.raises(ClientError) as excinfo:
            sagemaker.list_endpoints()
        code, status, message = client_error(excinfo)
        assert (code, status) == ("AccessDeniedException", 403)
        assert f"user/{who} is not authorized to perform: sagemaker:ListEndpoints" in message
        with pytest.raises(ClientError) as excinfo:
            sagemaker.delete_endpoint(EndpointName=ENDPOINT)
        assert client_error(excinfo)[0] == "AccessDeniedException"
    names = [
        e["EndpointName"]
        for e in client(server, "sagemaker", "admin").list_endpoints()["Endpoints"]
    ]
    assert ENDPOINT in names


# -- signatures ------------------------------------------------------------------------------------
def signed_invocation(
    server: PolyhostProcess,
    who: str = "admin",
    *,
    body: bytes = b"x",
    headers: dict[str, str] | None = None,
    path: str | None = None,
    region: str = REGION,
    service: str = "sagemaker",
) -> AWSRequest:
    key, secret = SECRETS[who]
    request = AWSRequest(
        method="POST",
        url=server.url + (path or f"/endpoints/{ENDPOINT}/invocations"),
        data=body,
        headers={
            "Content-Type": "application/octet-stream",
            "X-Amzn-SageMaker-Target-Container-Hostname": "common",
            **(headers or {}),
        },
    )
    SigV4Auth(Credentials(key, secret), service, region).add_auth(request)
    return request


def send(
    server: PolyhostProcess,
    request: AWSRequest,
    *,
    body: bytes | None = None,
    path: str | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send a (possibly tampered) request exactly as given, with http.client."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    target = path or request.url.split(str(server.port), 1)[1]
    payload = request.data if body is None else body
    connection.putrequest(request.method, target, skip_host=True, skip_accept_encoding=True)
    # botocore signs the Host it derives from the URL without adding the header itself.
    connection.putheader("Host", f"127.0.0.1:{server.port}")
    for name, value in list(request.headers.items()) + (extra or []):
        connection.putheader(name, value)
    if "content-length" not in {k.lower() for k, _ in request.headers.items()}:
        connection.putheader("Content-Length", str(len(payload)))
    connection.endheaders(payload)
    answer = connection.getresponse()
    data = answer.read()
    connection.close()
    parsed = json.loads(data) if answer.status >= 400 else {"raw": data.decode("latin-1")}
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, parsed


def refusal(status: int, headers: dict[str, str], body: dict[str, Any]) -> str:
    assert status == 403, (status, body)
    code = headers.get("x-amzn-errortype", "").split(":")[0]
    # AWS's words only: never which part of the request differed from what was signed.
    message = body.get("message", "").lower()
    assert message and not any(w in message for w in ("body", "path", "query", "canonical"))
    return code


def test_a_correctly_signed_raw_request_is_served(server: PolyhostProcess) -> None:
    status, _headers, _body = send(server, signed_invocation(server))
    assert status == 200


def test_unsigned_requests_are_refused_on_every_route(server: PolyhostProcess) -> None:
    request = urllib.request.Request(
        f"{server.url}/endpoints/{ENDPOINT}/invocations", data=b"x", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=30)
    assert excinfo.value.code == 403
    assert excinfo.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    control = urllib.request.Request(
        server.url + "/",
        data=b"{}",
        method="POST",
        headers={
            "X-Amz-Target": "SageMaker.ListModels",
            "Content-Type": "application/x-amz-json-1.1",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(control, timeout=30)
    assert excinfo.value.code == 403
    assert json.loads(excinfo.value.read())["__type"] == "MissingAuthenticationTokenException"
    for path in ("/metrics", f"/polyhost/endpoints/{ENDPOINT}/logs", "/nowhere"):
        with pytest.raises(urllib.error.HTTPError) as excinfo:
            urllib.request.urlopen(server.url + path, timeout=30)
        assert excinfo.value.code == 403, path
    with urllib.request.urlopen(server.url + "/ping", timeout=30) as answer:
        assert answer.status == 200  # liveness stays open: it tells nothing


def test_an_unknown_key_is_refused(server: PolyhostProcess) -> None:
    runtime = client(server, "sagemaker-runtime", "admin", aws_access_key_id="AKIANOBODY0000000001")
    with pytest.raises(ClientError) as excinfo:
        runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=b"x", TargetContainerHostname="common")
    assert client_error(excinfo)[:2] == ("UnrecognizedClientException", 403)


def test_a_wrong_secret_is_refused_without_saying_which_part_failed(
    server: PolyhostProcess,
) -> None:
    sagemaker = client(server, "sagemaker", "admin", aws_secret_access_key="x" * 40)
    with pytest.raises(ClientError) as excinfo:
        sagemaker.list_models()
    code, status, message = client_error(excinfo)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert "does not match" in message and "secret" in message.lower()


@pytest.mark.parametrize(
    "tamper",
    ["body", "header", "path", "query", "duplicate-header", "target-header-added"],
)
def test_a_request_changed_after_signing_is_refused(server: PolyhostProcess, tamper: str) -> None:
    request = signed_invocation(server)
    # Served as signed first: what the server memoises from it (the parsed Authorization
    # header, the date, the path) must not let the changed request through.
    assert send(server, request)[0] == 200
    kwargs: dict[str, Any] = {}
    if tamper == "body":
        kwargs["body"] = b"y"
    elif tamper == "header":
        request.headers.replace_header("X-Amzn-SageMaker-Target-Container-Hostname", "special1")
    elif tamper == "path":
        kwargs["path"] = "/endpoints/other/invocations"
    elif tamper == "query":
        kwargs["path"] = f"/endpoints/{ENDPOINT}/invocations?x=1"
    elif tamper == "duplicate-header":
        kwargs["extra"] = [("X-Amzn-SageMaker-Target-Container-Hostname", "special1")]
    else:  # a condition-key header the client did not sign
        kwargs["extra"] = [("X-Amzn-SageMaker-Target-Variant", "AllTraffic")]
    status, headers, body = send(server, request, **kwargs)
    # An unsigned x-amz-* header makes the signature incomplete rather than wrong.
    expected = "IncompleteSignatureException" if tamper == "target-header-added" else None
    assert refusal(status, headers, body) == (expected or "InvalidSignatureException")


@pytest.mark.parametrize("minutes", [-16, 16, 60 * 24])
def test_a_stale_or_replayed_request_is_refused(server: PolyhostProcess, minutes: int) -> None:
    moment = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    moment += datetime.timedelta(minutes=minutes)
    # The client's clock is off (or the request was captured long ago): botocore reads the
    # time through get_current_datetime, patched here on the client side only.
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=moment):
        request = signed_invocation(server)
    assert moment.strftime("%Y%m%dT%H%M%S") in request.headers["X-Amz-Date"]
    status, headers, body = send(server, request)
    assert refusal(status, headers, body) == "InvalidSignatureException"


def test_a_request_replayed_within_the_window_with_the_same_signature_is_served(
    server: PolyhostProcess,
) -> None:
    """SigV4 has no nonce: AWS accepts a replay inside 15 minutes, and so does polyhost."""
    request = signed_invocation(server)
    assert send(server, request)[0] == 200
    assert send(server, request)[0] == 200


@pytest.mark.parametrize(
    ("region", "service"), [("eu-west-1", "sagemaker"), (REGION, "monitoring"), (REGION, "s3")]
)
def test_a_request_signed_for_another_region_or_service_is_refused(
    server: PolyhostProcess, region: str, service: str
) -> None:
    status, headers, body = send(server, signed_invocation(server, region=region, service=service))
    assert refusal(status, headers, body) in ("InvalidSignatureException", "SignatureDoesNotMatch")


# -- the CLI and reloads ---------------------------------------------------------------------------
def test_the_aws_cli_with_a_profile(server: PolyhostProcess, tmp_path: Path) -> None:
    key, secret = SECRETS["admin"]
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[polyhost-admin]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
        "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }
    command = [
        str(Path(sys.executable).parent / "aws"), "sagemaker", "describe-endpoint",
        "--endpoint-name", ENDPOINT, "--endpoint-url", server.url,
        "--region", REGION, "--profile", "polyhost-admin",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["EndpointArn"] == ENDPOINT_ARN
    env_bad = dict(env)
    credentials.write_text(
        f"[polyhost-admin]\naws_access_key_id = {key}\naws_secret_access_key = {'y' * 40}\n",
        encoding="utf-8",
    )
    done = subprocess.run(command, env=env_bad, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "InvalidSignatureException" in done.stderr


def test_sighup_reloads_a_good_file_and_keeps_the_old_one_when_bad(
    server: PolyhostProcess, auth_file: Path
) -> None:
    assert server.process is not None
    original = auth_file.read_text(encoding="utf-8")
    newcomer = principal("newcomer", "AKIANEWCOMER00000001", [ADMIN])
    try:
        with_newcomer = {"principals": [*PRINCIPALS["principals"], newcomer]}
        auth_file.write_text(json.dumps(with_newcomer), encoding="utf-8")
        server.process.send_signal(signal.SIGHUP)
        SECRETS["newcomer"] = (newcomer["access_key_id"], newcomer["secret_access_key"])
        wait_until(lambda: lists_models(server, "newcomer"), "the newcomer is accepted")

        bad = json.loads(json.dumps(with_newcomer))
        bad["principals"][0]["policies"] = [
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}],
            }
        ]
        auth_file.write_text(json.dumps(bad), encoding="utf-8")
        server.process.send_signal(signal.SIGHUP)
        wait_until(lambda: "not reloaded" in server.log(), "the bad file is reported")
        assert lists_models(server, "newcomer") and lists_models(server, "admin")
        assert "admin-secret-key" not in server.log()
    finally:
        auth_file.write_text(original, encoding="utf-8")
        server.process.send_signal(signal.SIGHUP)
        SECRETS.pop("newcomer", None)


def lists_models(server: PolyhostProcess, who: str) -> bool:
    try:
        client(server, "sagemaker", who).list_models()
    except ClientError:
        return False
    return True


def wait_until(condition: Any, what: str, timeout: float = 30.0) -> None:
    eventually(condition, what, timeout=timeout, interval=0.05)


def test_a_bad_policy_stops_the_server_naming_principal_and_statement(tmp_path: Path) -> None:
    bad = {
        "principals": [
            principal(
                "broken",
                "AKIABROKEN0000000001",
                [
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "Oops",
                                "Effect": "Allow",
                                "Action": "sagemaker:*",
                                "Resource": "*",
                                "Condition": {"StringLikeish": {"aws:username": "x"}},
                            }
                        ],
                    }
                ],
            )
        ]
    }
    path = tmp_path / "principals.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "polyhost", "serve", "--port", "0", "--state-dir",
         str(tmp_path / "state"), "--auth-file", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "broken" in done.stderr and "Oops" in done.stderr and "StringLikeish" in done.stderr
    assert "broken-secret-key" not in done.stderr


def test_a_non_loopback_bind_needs_auth(tmp_path: Path, auth_file: Path) -> None:
    args = [sys.executable, "-m", "polyhost", "serve", "--host", "0.0.0.0", "--port", "1",
            "--state-dir", str(tmp_path / "refused")]  # fmt: skip
    refused = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--auth-file" in refused.stderr
    # With an auth file the same bind is allowed (no traffic leaves loopback: only the test's
    # own /ping reaches it, through 127.0.0.1).
    server = PolyhostProcess(
        state_dir=tmp_path / "allowed",
        extra_args=["--host", "0.0.0.0", "--auth-file", str(auth_file)],
    ).start()
    try:
        assert "requests must be signed" in server.log()
    finally:
        server.stop()


def test_polyhost_auth_check_explains_like_the_policy_simulator(auth_file: Path) -> None:
    def check(who: str, hostname: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "polyhost", "auth", "check", str(auth_file),
             "--principal", who, "--action", "sagemaker:InvokeEndpoint",
             "--resource", ENDPOINT_ARN,
             "--context", f"sagemaker:TargetContainerHostname={hostname}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    allowed = check("operator", "customIps1")
    assert allowed.returncode == 0 and allowed.stdout.startswith("Allow")
    assert "policy 0, statement 0" in allowed.stdout
    denied = check("operator", "special1")
    assert denied.returncode == 1 and denied.stdout.startswith("Deny")
    assert "explicitly denied by policy 0, statement 1" in denied.stdout
    implicit = check("analyst", "other")
    assert implicit.returncode == 1 and "implicitDeny" in implicit.stdout


def test_polyhost_auth_new_principal_prints_a_loadable_entry(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "polyhost", "auth", "new-principal", "carol"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    entry = json.loads(done.stdout)
    assert entry["name"] == "carol" and entry["access_key_id"].startswith("AKIA")
    assert len(entry["secret_access_key"]) == 40
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"principals": [entry]}), encoding="utf-8")
    denied = subprocess.run(
        [sys.executable, "-m", "polyhost", "auth", "check", str(path), "--principal", "carol",
         "--action", "sagemaker:ListModels", "--resource", "*"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert denied.returncode == 1 and "implicitDeny" in denied.stdout


def test_a_percent_encoded_endpoint_name_is_the_decoded_name_for_policy_and_router(
    server: PolyhostProcess,
) -> None:
    """AWS decodes the path: `%4DultiModel-Endpoint` is `MultiModel-Endpoint`, which the scoped
    principal may invoke, and which the router serves."""
    encoded = "%4D" + ENDPOINT[1:]
    path = f"/endpoints/{encoded}/invocations"
    status, _headers, _body = send(server, signed_invocation(server, "scoped", path=path))
    assert status == 200
    other = f"/endpoints/{encoded}x/invocations"  # a name the policy does not cover
    status, headers, body = send(server, signed_invocation(server, "scoped", path=other))
    assert status == 403 and headers.get("x-amzn-errortype", "").startswith("AccessDenied")
    assert f"endpoint/{ENDPOINT.lower()}x" in body.get("message", ""), body
