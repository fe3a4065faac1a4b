"""The admin listener: its own port, its bearer token, its own connection cap, and the refusals
at start that keep it from being opened to the network by accident."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.server import PolyhostProcess, ServerFactory, free_port


def get(
    url: str, token: str | None = None, method: str = "GET"
) -> tuple[int, bytes, dict[str, str]]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read(), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


@pytest.fixture(scope="module")
def token() -> str:
    return secrets.token_hex(32)


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory, token: str, start_server: ServerFactory
) -> PolyhostProcess:
    """A server whose admin listener requires a token."""
    token_file = tmp_path_factory.mktemp("admin") / "admin.token"
    token_file.write_text(token + "\n", encoding="utf-8")
    return start_server("--admin-token-file", str(token_file), name="admin", images=False)


def test_metrics_and_the_api_are_served_on_the_admin_port(server: PolyhostProcess) -> None:
    status, body, headers = get(server.admin_url + "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    status, body, _ = get(server.admin_url + "/api/containers")
    assert status == 200 and json.loads(body)["containers"] == []
    status, _, _ = get(server.url + "/metrics")
    assert status == 404


def test_the_admin_port_serves_only_its_own_routes(server: PolyhostProcess) -> None:
    status, body, _ = get(server.admin_url + "/nope")
    assert status == 404 and "No route for GET /nope" in json.loads(body)["message"]
    status, _, headers = get(server.admin_url + "/metrics", method="POST")
    assert status == 405 and headers["allow"] == "GET"
    status, _, _ = get(server.admin_url + "/endpoints/any/invocations", method="POST")
    assert status == 404
    status, _, _ = get(server.admin_url + "/ping")
    assert status == 404  # the main port's route: nothing of it is served here


def test_a_token_is_required_when_configured(guarded: PolyhostProcess, token: str) -> None:
    for path in ("/metrics", "/api/containers", "/api/endpoints", "/nope"):
        for presented in (None, "wrong", token[:-1], token + "x"):
            status, body, headers = get(guarded.admin_url + path, presented)
            assert status == 401, (path, presented)
            assert headers["www-authenticate"].startswith("Bearer")
            assert json.loads(body)["__type"] == "UnauthorizedException"
    assert get(guarded.admin_url + "/metrics", token)[0] == 200
    assert get(guarded.admin_url + "/api/containers", token)[0] == 200
    # Another scheme with the right token is still refused.
    request = urllib.request.Request(
        guarded.admin_url + "/metrics", headers={"Authorization": f"Basic {token}"}
    )
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(request, timeout=30)
    assert excinfo.value.code == 401
    assert token not in guarded.log()


def test_a_full_main_port_leaves_room_for_the_admin_port(tmp_path: Path) -> None:
    server = PolyhostProcess(
        state_dir=tmp_path / "state", extra_args=["--max-connections", "2"]
    ).start()
    held: list[socket.socket] = []
    try:
        for _ in range(2):
            held.append(socket.create_connection(("127.0.0.1", server.port), timeout=30))
        # The main port is full once it refuses a connection (the two held ones are counted
        # as they are accepted, so poll until the refusal shows).
        deadline = time.monotonic() + 30
        while True:
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as extra:
                extra.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = extra.recv(65536)
            if answer.startswith(b"HTTP/1.1 503"):
                break
            assert time.monotonic() < deadline, answer
        for _ in range(5):
            assert get(server.admin_url + "/metrics")[0] == 200
            assert get(server.admin_url + "/api/endpoints")[0] == 200
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_admin_port_zero_turns_the_listener_off(tmp_path: Path) -> None:
    server = PolyhostProcess(state_dir=tmp_path / "state", extra_args=["--admin-port", "0"])
    server.start()
    try:
        assert "polyhost listening" in server.log()
        assert "admin listener" not in server.log()
        assert get(server.url + "/metrics")[0] == 404
    finally:
        server.stop()


def serve(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "polyhost", "serve", "--port", "0",
         "--state-dir", str(tmp_path / "state"), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_non_loopback_admin_host_needs_a_token_file(tmp_path: Path) -> None:
    refused = serve("--admin-host", "0.0.0.0", "--admin-port", str(free_port()), tmp_path=tmp_path)
    assert refused.returncode == 2
    assert "--admin-token-file" in refused.stderr and "0.0.0.0" in refused.stderr


@pytest.mark.parametrize(
    ("content", "reason"),
    [("short-secret", "fewer than 16"), ("two words but long enough", "cannot carry")],
)
def test_an_unusable_token_file_stops_the_server(tmp_path: Path, content: str, reason: str) -> None:
    token_file = tmp_path / "admin.token"
    token_file.write_text(content, encoding="utf-8")
    refused = serve(
        "--admin-port", str(free_port()), "--admin-token-file", str(token_file), tmp_path=tmp_path
    )
    assert refused.returncode == 2 and reason in refused.stderr
    assert content not in refused.stderr


def test_a_token_file_opens_a_non_loopback_admin_host(tmp_path: Path, token: str) -> None:
    token_file = tmp_path / "admin.token"
    token_file.write_text(token, encoding="utf-8")
    server = PolyhostProcess(
        state_dir=tmp_path / "state",
        extra_args=["--admin-host", "0.0.0.0", "--admin-token-file", str(token_file)],
    ).start()
    try:
        assert get(server.admin_url + "/metrics")[0] == 401
        assert get(server.admin_url + "/metrics", token)[0] == 200
        assert "bearer token required" in server.log()
    finally:
        server.stop()


def test_an_admin_port_in_use_is_reported(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        taken = sock.getsockname()[1]
        result = serve("--admin-port", str(taken), tmp_path=tmp_path)
    assert result.returncode != 0
    assert "admin listener" in result.stderr and "address already in use" in result.stderr.lower()
