"""The server process itself: bind safety, clean stop on SIGTERM/SIGINT, its own /ping."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.endpoints import deploy, echo_container, invoke
from tests.support.server import PolyhostProcess, free_port, write_image_config


def test_refuses_non_loopback_bind_without_insecure(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "polyhost", "serve", "--host", "0.0.0.0", "--port", "0",
         "--state-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--insecure" in result.stderr
    assert "refusing to bind 0.0.0.0" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stops_cleanly_and_stops_its_containers(tmp_path: Path, sig: int) -> None:
    proc = PolyhostProcess(
        state_dir=tmp_path / "state", image_config=write_image_config(tmp_path / "images.toml")
    ).start()
    sagemaker, runtime = proc.sagemaker(), proc.runtime()
    deploy(sagemaker, "stopme", [echo_container("x")])
    port = int(invoke(runtime, "stopme", b"", CustomAttributes="whoami=1")[0].split(b"@")[1])
    started = time.monotonic()
    assert proc.stop(sig) == 0
    assert time.monotonic() - started < 10
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # its container is gone too
    assert "polyhost stopped" in proc.log()


def test_logs_one_line_per_request(server: PolyhostProcess) -> None:
    sagemaker = server.sagemaker()
    sagemaker.list_models()
    sagemaker.list_endpoints()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        log = server.log()
        if "ListModels" in log and "ListEndpoints" in log:
            break
        time.sleep(0.05)
    lines = [line for line in server.log().splitlines() if "polyhost.access" in line]
    assert any('"POST /" ListModels 200' in line for line in lines), lines
    assert any('"POST /" ListEndpoints 200' in line for line in lines), lines


def test_unknown_path_is_a_clear_404(server: PolyhostProcess) -> None:
    import json
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(server.url + "/nope", timeout=5)
    assert excinfo.value.code == 404
    assert "No route for GET /nope" in json.loads(excinfo.value.read())["message"]


def test_port_in_use_is_reported(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "polyhost", "serve", "--port", str(port),
             "--state-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert result.returncode != 0
    assert "address already in use" in (result.stderr + result.stdout).lower()


_ = free_port
