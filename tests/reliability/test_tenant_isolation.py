"""Tenants' containers stay apart: no way around the router, none into the server's files.

A real server with `--auth-file`, real signed boto3 clients, and containers
(`tests/support/containers/prober.py`) that try what a hostile tenant's container tried before
isolation: POST straight to another endpoint's container port (the guide's Deny on `special*`
bypassed by calling special1's port), GET the admin listener's API on loopback, read the auth
file, the state database, the admin token, the server's environment, connect to the Docker
socket. Each reports what got through in its /invocations answer.

With auth, each instance's containers run in a network namespace of their own and as a user of
their own: everything above is refused, the router still serves every endpoint, and the two
containers of one instance (a Direct multi-container endpoint) still reach each other on
loopback, as on one SageMaker instance. Without auth and without --isolate, nothing changes.

Container users need what they run to be reachable by other users: the test's state dir sits
in a folder of its own (0711; pytest's temporary folders are 0700), and the container program
runs under a Python that other users may run.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from polyhost.backends.confinement import can_switch_users, unreachable_by_others
from polyhost.backends.netns import probe
from tests.support.endpoints import create_config, create_model, wait_status
from tests.support.server import ACCOUNT, CONTAINERS, REGION, PolyhostProcess

PROBER_IMAGE = "polyhost-test/prober:1"
ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
USERS = (2_000_000_000, 2_000_099_999)


def _python_for_others() -> str | None:
    """A Python interpreter users other than the server's may run (the venv's may not be)."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3", sys.executable):
        found = shutil.which(candidate)
        if found and unreachable_by_others(Path(found), execute=True) is None:
            return found
    return None


PYTHON = _python_for_others()
pytestmark = pytest.mark.skipif(
    probe() is not None or not can_switch_users() or PYTHON is None,
    reason="needs a server that may make network namespaces and switch users, and a Python "
    "other users may run",
)


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
        # The guide's operator: any container of `guide` but special*.
        principal(
            "operator",
            "AKIAOPERATOR00000001",
            [
                {
                    "Effect": "Allow",
                    "Action": "sagemaker:InvokeEndpoint",
                    "Resource": f"{ARN}:endpoint/guide",
                    "Condition": {"StringLike": {"sagemaker:TargetContainerHostname": ["*"]}},
                },
                {
                    "Effect": "Deny",
                    "Action": "sagemaker:InvokeEndpoint",
                    "Resource": f"{ARN}:endpoint/guide",
                    "Condition": {
                        "StringLike": {"sagemaker:TargetContainerHostname": ["special*"]}
                    },
                },
            ],
        ),
    ]
}


def client(server: PolyhostProcess, service: str, who: str = "admin") -> Any:
    entry = next(p for p in PRINCIPALS["principals"] if p["name"] == who)
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=entry["access_key_id"],
        aws_secret_access_key=entry["secret_access_key"],
        config=Config(retries={"max_attempts": 1}, read_timeout=60),
    )


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """A folder other users may enter (not list), holding the state dir and the auth file."""
    folder = Path(tempfile.mkdtemp(prefix="polyhost-isolation-"))
    os.chmod(folder, 0o711)
    assert PYTHON is not None
    (folder / "images.toml").write_text(
        f'[images."{PROBER_IMAGE}"]\ncommand = ["{PYTHON}", "{CONTAINERS / "prober.py"}"]\n',
        encoding="utf-8",
    )
    auth = folder / "principals.json"
    auth.write_text(json.dumps(PRINCIPALS), encoding="utf-8")
    os.chmod(auth, 0o644)  # as an operator might leave it
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def deploy_all(sagemaker: Any) -> None:
    """`guide`: the guide's Direct endpoint (customIps1, special1 on one instance); `other`:
    another tenant's endpoint."""
    prober = {"Image": PROBER_IMAGE}
    create_model(
        sagemaker,
        "guide",
        [
            {**prober, "ContainerHostname": "customIps1"},
            {**prober, "ContainerHostname": "special1"},
        ],
        mode="Direct",
    )
    create_model(sagemaker, "other", [prober])
    for name in ("guide", "other"):
        create_config(sagemaker, name, [("AllTraffic", name, 1, 1.0)])
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    for name in ("guide", "other"):
        assert wait_status(sagemaker, name, timeout=90)["EndpointStatus"] == "InService"


@pytest.fixture(scope="module")
def shared(base: Path) -> Iterator[PolyhostProcess]:
    """A server shared by tenants: auth on, so isolation on; users from a range of our own."""
    proc = PolyhostProcess(
        state_dir=base / "state",
        image_config=base / "images.toml",
        extra_args=[
            *("--auth-file", str(base / "principals.json")),
            *("--container-user", f"{USERS[0]}-{USERS[1]}"),
        ],
    ).start()
    deploy_all(client(proc, "sagemaker"))
    yield proc
    proc.stop()


def ask(
    server: PolyhostProcess,
    endpoint: str,
    attempts: dict[str, Any] | None = None,
    target: str | None = None,
    who: str = "admin",
) -> dict[str, Any]:
    extra = {} if target is None else {"TargetContainerHostname": target}
    answer = client(server, "sagemaker-runtime", who).invoke_endpoint(
        EndpointName=endpoint,
        Body=json.dumps(attempts or {}).encode(),
        ContentType="application/json",
        **extra,
    )
    report: dict[str, Any] = json.loads(answer["Body"].read())
    return report


def refused(outcome: str) -> bool:
    return not outcome.startswith("ok")


# --- the router still serves; containers run as users of their own ------------------------------


def test_the_router_serves_every_endpoint_and_container(shared: PolyhostProcess) -> None:
    mine = os.getuid()
    seen = [
        ask(shared, "guide", target="customIps1"),
        ask(shared, "guide", target="special1"),
        ask(shared, "other"),
    ]
    for report in seen:
        assert report["uid"] != mine and USERS[0] <= report["uid"] <= USERS[1]
        assert report["gid"] == report["uid"]
        assert report["groups"] == []
    # One user per instance: the guide's two containers share one, the other tenant has its own.
    assert seen[0]["uid"] == seen[1]["uid"] != seen[2]["uid"]


def test_the_guides_deny_still_holds_at_the_router(shared: PolyhostProcess) -> None:
    assert ask(shared, "guide", target="customIps1", who="operator")["port"] > 0
    with pytest.raises(ClientError) as denied:
        ask(shared, "guide", target="special1", who="operator")
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"


# --- networks -------------------------------------------------------------------------------------


def test_a_container_cannot_reach_another_endpoints_container(shared: PolyhostProcess) -> None:
    special = ask(shared, "guide", target="special1")["port"]
    other = ask(shared, "other")["port"]
    from_other = ask(shared, "other", {"post": [["127.0.0.1", special]]})
    from_guide = ask(shared, "guide", {"post": [["127.0.0.1", other]]}, target="customIps1")
    assert refused(from_other["post"][f"127.0.0.1:{special}"]), from_other
    assert refused(from_guide["post"][f"127.0.0.1:{other}"]), from_guide
    # Nor by the machine's other addresses: the namespace has no interface but its loopback.
    address = _host_address()
    if address is not None:
        outside = ask(shared, "other", {"post": [[address, special]]})
        assert refused(outside["post"][f"{address}:{special}"]), outside


def test_the_containers_of_one_instance_reach_each_other(shared: PolyhostProcess) -> None:
    special = ask(shared, "guide", target="special1")["port"]
    report = ask(shared, "guide", {"post": [["127.0.0.1", special]]}, target="customIps1")
    outcome = report["post"][f"127.0.0.1:{special}"]
    assert outcome.startswith("ok: 200"), report


def test_a_container_cannot_reach_the_admin_listener(shared: PolyhostProcess) -> None:
    urls = [f"{shared.admin_url}/api/endpoints", f"{shared.admin_url}/metrics"]
    report = ask(shared, "other", {"get": urls})
    assert all(refused(report["get"][url]) for url in urls), report


def test_the_main_port_is_out_of_reach_too(shared: PolyhostProcess) -> None:
    """Not even the router's own port: a container has no way out of its instance."""
    report = ask(shared, "other", {"get": [f"{shared.url}/ping"]})
    assert refused(report["get"][f"{shared.url}/ping"]), report


# --- files ----------------------------------------------------------------------------------------


def test_a_container_cannot_read_the_servers_files(shared: PolyhostProcess, base: Path) -> None:
    assert shared.process is not None
    state = base / "state"
    logs = sorted((state / "containers" / "guide").rglob("container.log"))
    assert logs, "the guide's containers have logs"
    paths = [
        str(base / "principals.json"),
        str(state / "polyhost.db"),
        str(state / "admin-token"),
        f"/proc/{shared.process.pid}/environ",
        str(logs[0]),  # another tenant's log, by a path it can guess
    ]
    report = ask(shared, "other", {"read": paths, "unix": ["/var/run/docker.sock"]})
    for path in paths:
        assert refused(report["read"][path]), (path, report["read"][path])
    assert refused(report["unix"]["/var/run/docker.sock"]), report["unix"]


def test_the_auth_file_lost_its_bits_for_others(shared: PolyhostProcess, base: Path) -> None:
    mode = stat.S_IMODE((base / "principals.json").stat().st_mode)
    assert mode & 0o007 == 0
    assert "made it mode 0640" in shared.log()


# --- the admin listener ---------------------------------------------------------------------


def _admin_get(server: PolyhostProcess, token: str | None) -> int:
    request = urllib.request.Request(f"{server.admin_url}/api/endpoints")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_admin_listener_needs_a_token_even_on_loopback(
    shared: PolyhostProcess, base: Path
) -> None:
    token_file = base / "state" / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert f"made one in {token_file} (mode 0600)" in shared.log()
    assert _admin_get(shared, None) == 401
    assert _admin_get(shared, "0123456789abcdef0123") == 401
    assert _admin_get(shared, token_file.read_text().strip()) == 200


def test_the_start_up_message_says_what_is_isolated(shared: PolyhostProcess) -> None:
    log = shared.log()
    assert "network isolation on: each instance's containers run in a namespace" in log
    assert f"process containers run as users {USERS[0]}-{USERS[1]}, one per instance" in log


# --- without auth: today's behaviour ----------------------------------------------------------


def test_without_auth_nothing_changes(base: Path) -> None:
    """The loopback developer server: containers share the host's network and the server's
    user, as before (and the admin listener needs no token)."""
    folder = base / "open"
    folder.mkdir()
    proc = PolyhostProcess(state_dir=folder / "state", image_config=base / "images.toml").start()
    try:
        sagemaker = proc.sagemaker()
        create_model(sagemaker, "one", [{"Image": PROBER_IMAGE}])
        create_model(sagemaker, "two", [{"Image": PROBER_IMAGE}])
        for name in ("one", "two"):
            create_config(sagemaker, name, [("AllTraffic", name, 1, 1.0)])
            sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
        for name in ("one", "two"):
            assert wait_status(sagemaker, name, timeout=90)["EndpointStatus"] == "InService"
        runtime = proc.runtime()

        def ask_open(name: str, attempts: dict[str, Any]) -> dict[str, Any]:
            answer = runtime.invoke_endpoint(EndpointName=name, Body=json.dumps(attempts).encode())
            result: dict[str, Any] = json.loads(answer["Body"].read())
            return result

        two = ask_open("two", {})
        assert two["uid"] == os.getuid()
        report = ask_open("one", {"post": [["127.0.0.1", two["port"]]]})
        assert report["post"][f"127.0.0.1:{two['port']}"].startswith("ok: 200"), report
        assert _admin_get(proc, None) == 200
    finally:
        proc.stop()


def _host_address() -> str | None:
    """One of the machine's non-loopback addresses, when it has one."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # no packet is sent: only the route is looked up
            address = str(sock.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") else address
