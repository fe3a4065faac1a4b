"""Every container fault of tests/support/containers/faulty.py, through a real server and boto3.

Each test puts the faulty container ("bad") beside a healthy neighbour ("good") on the same
endpoint, states the bound the server holds against the fault (time, bytes on disk, processes
left), and checks the neighbour keeps serving. Faults that strike at start are driven through
an UpdateEndpoint of a serving endpoint, so "the same endpoint" is the one whose neighbour
serves on while the faulty revision fails.

Waits have generous deadlines only so a failure cannot hang; nothing asserts how long a thing
took. The server runs with short health-check, invocation and startup timeouts and small logs.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import create_config, create_model, deploy, invoke, wait_status
from tests.support.errors import ClientErrorParts, client_error
from tests.support.server import (
    CONTAINERS,
    ECHO_IMAGE,
    FAULTY_IMAGE,
    PolyhostProcess,
    ServerFactory,
    write_image_config,
)
from tests.support.waiting import eventually

LIMITED_IMAGE = "polyhost-test/faulty-limited:1"  # faulty.py with a memory limit
MEMORY_LIMIT_MIB = 256
# Not a multiple of the flood's 64 KiB writes, so the current file's size varies as it rotates
# (a follower notices a rotation by the size dropping below its offset).
LOG_MAX_BYTES = 100_000
LOG_BACKUPS = 2
STARTUP_TIMEOUT_S = 4
INVOCATION_TIMEOUT_S = 2
HEALTH_INTERVAL_S = 0.3
HEALTH_FAILURES = 3
POLL_S = 0.05  # between probes that invoke the endpoint


def image_config(path: Path) -> Path:
    write_image_config(path)
    with open(path, "a", encoding="utf-8") as config:
        config.write(
            f'[images."{LIMITED_IMAGE}"]\n'
            f'command = ["{sys.executable}", "{CONTAINERS / "faulty.py"}"]\n'
            f'memory = "{MEMORY_LIMIT_MIB}MiB"\n'
        )
    return path


def start_fault_server(start: ServerFactory) -> PolyhostProcess:
    return start(
        *("--log-max-bytes", str(LOG_MAX_BYTES)),
        *("--log-backups", str(LOG_BACKUPS)),
        *("--startup-timeout", str(STARTUP_TIMEOUT_S)),
        *("--invocation-timeout", str(INVOCATION_TIMEOUT_S)),
        *("--health-check-interval", str(HEALTH_INTERVAL_S)),
        *("--health-check-failures", str(HEALTH_FAILURES)),
        name="faults",
        images=image_config,
    )


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    return start_fault_server(start_server)


# -- helpers ------------------------------------------------------------------------------------
def good() -> dict[str, Any]:
    return {"Image": ECHO_IMAGE, "ContainerHostname": "good", "Environment": {"ECHO_NAME": "good"}}


def bad(fault: str, image: str = FAULTY_IMAGE, **environment: str) -> dict[str, Any]:
    return {
        "Image": image,
        "ContainerHostname": "bad",
        "Environment": {"FAULT": fault, "FAULT_NAME": "bad", **environment},
    }


def with_neighbour(sagemaker: Any, name: str, fault: dict[str, Any]) -> dict[str, Any]:
    """Endpoint `name` serving `good` and the faulty `bad`, Direct; waits for its status."""
    return deploy(sagemaker, name, [good(), fault], mode="Direct")


def neighbour_answers(runtime: Any, name: str) -> None:
    body, _ = invoke(runtime, name, b"x", TargetContainerHostname="good")
    assert body == b"good:x"


def error_of(call: Callable[[], Any]) -> ClientErrorParts:
    with pytest.raises(ClientError) as raised:
        call()
    return client_error(raised)


def container_folder(server: PolyhostProcess, name: str, hostname: str) -> Path:
    """The folder of the endpoint's latest revision's container (revisions count server-wide)."""
    folders = (server.state_dir / "containers" / name).glob(f"r*/AllTraffic/i-0/{hostname}")
    return max(folders, key=lambda folder: int(folder.parts[-4][1:]))


def restarts(server: PolyhostProcess, name: str, hostname: str) -> int:
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    pattern = re.compile(
        r"^polyhost_container_restarts_total\{([^}]*)\} ([0-9.e+]+)$", re.MULTILINE
    )
    for labels, value in pattern.findall(text):
        if f'endpoint_name="{name}"' in labels and f'container_name="{hostname}"' in labels:
            return int(float(value))
    return -1


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def update_with_fault(sagemaker: Any, runtime: Any, name: str, fault: dict[str, Any]) -> str:
    """Serve `good` + a spare on `name`, update it to `good` + the faulty `bad`, and return
    the update's FailureReason; the neighbour is invoked all along and must never fail."""
    assert with_neighbour(sagemaker, name, good() | {"ContainerHostname": "spare"}) is not None
    assert wait_status(sagemaker, name)["EndpointStatus"] == "InService"
    create_model(sagemaker, f"{name}-2", [good(), fault], "Direct")
    create_config(sagemaker, f"{name}-2", [("AllTraffic", f"{name}-2", 1, 1.0)])
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=f"{name}-2")
    answered = 0
    while sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Updating":
        neighbour_answers(runtime, name)
        answered += 1
        assert answered < 5000, "the update never ended"
    description = sagemaker.describe_endpoint(EndpointName=name)
    assert description["EndpointStatus"] == "InService"  # the old revision serves on
    neighbour_answers(runtime, name)
    return str(description["FailureReason"])


# -- the faults -----------------------------------------------------------------------------------
def test_exit_at_start(sagemaker: Any, runtime: Any) -> None:
    """Bound: the update fails as soon as the container exits (not at the startup timeout),
    quoting its last words; the serving revision is untouched."""
    reason = update_with_fault(sagemaker, runtime, "f-exit", bad("exit-at-start"))
    assert "Container bad for production variant AllTraffic exited with code 3" in reason
    assert "bad: configured to fail at start" in reason


def test_never_ping(sagemaker: Any, runtime: Any, server: PolyhostProcess) -> None:
    """Bound: one start and one startup timeout (not one per port tried), stated as it is."""
    reason = update_with_fault(sagemaker, runtime, "f-never", bad("never-ping"))
    assert (
        "Container bad for production variant AllTraffic did not pass the ping health check "
        f"within {STARTUP_TIMEOUT_S} seconds." in reason
    )
    starts = re.findall(r"started container f-never\.r\d+\.AllTraffic\.i-0\.bad ", server.log())
    assert len(starts) == 1
    assert "was taken by another process" not in server.log()


def test_hang(sagemaker: Any, runtime: Any) -> None:
    """Bound: a request the container never answers ends at the invocation timeout, as a
    ModelError; the neighbour answers meanwhile."""
    assert with_neighbour(sagemaker, "f-hang", bad("hang"))["EndpointStatus"] == "InService"
    outcome: list[tuple[str, int, str]] = []

    def hang() -> None:
        outcome.append(
            error_of(lambda: invoke(runtime, "f-hang", b"x", TargetContainerHostname="bad"))
        )

    thread = threading.Thread(target=hang)
    thread.start()
    while thread.is_alive():
        neighbour_answers(runtime, "f-hang")
        time.sleep(0.05)
    ((code, status, message),) = outcome
    assert (code, status) == ("ModelError", 424)
    assert message.startswith("Your invocation timed out while waiting for a response from")
    assert f"(Timeout: {INVOCATION_TIMEOUT_S:g} s.)" in message


def test_flood_stdout(sagemaker: Any, runtime: Any, server: PolyhostProcess) -> None:
    """Bound: at most (log_backups + 1) * log_max_bytes of log on disk, however much the
    container prints; the flood is cut at the reader and marked; both containers serve."""
    name = "f-flood"
    assert with_neighbour(sagemaker, name, bad("flood-stdout"))["EndpointStatus"] == "InService"
    log = container_folder(server, name, "bad") / "container.log"
    files = [log, *(log.with_name(f"container.log.{i}") for i in range(1, LOG_BACKUPS + 2))]
    eventually(files[LOG_BACKUPS].exists, "the log to rotate")
    follower = logs(server, name, "bad", limit=0)["size"]
    seen_restart = False
    samples = 0
    give_up = time.monotonic() + 60  # only so a failure cannot hang
    while samples < 20 or not seen_restart:  # the container floods on; the bound holds
        assert time.monotonic() < give_up, "a follower never saw the log rotate"
        samples += 1
        on_disk = sum(f.stat().st_size for f in files if f.exists())
        assert on_disk <= (LOG_BACKUPS + 1) * LOG_MAX_BYTES, on_disk
        assert not files[-1].exists()
        size = logs(server, name, "bad", limit=0)["size"]
        seen_restart |= size < follower  # a follower at `follower` starts again from 0
        follower = max(follower, size)
        neighbour_answers(runtime, name)
        body, _ = invoke(runtime, name, b"y", TargetContainerHostname="bad")
        assert body == b"bad:y"
        time.sleep(0.05)
    text = b"".join(f.read_bytes() for f in files if f.exists())
    assert re.search(rb"\[polyhost: \d+ bytes dropped\]\n", text)


def logs(server: PolyhostProcess, name: str, hostname: str, limit: int) -> dict[str, Any]:
    url = f"{server.url}/polyhost/endpoints/{name}/logs?container={hostname}&limit={limit}"
    with urllib.request.urlopen(url, timeout=10) as answer:
        (stream,) = json.loads(answer.read())["streams"]
    return dict(stream)


def test_allocate(sagemaker: Any, runtime: Any, server: PolyhostProcess) -> None:
    """Bound: the container never holds more than its image's memory limit: it is killed at
    the limit (an address-space limit makes it fail instead) and restarted; the neighbour
    serves."""
    name = "f-alloc"
    fault = bad("allocate", LIMITED_IMAGE, FAULT_AFTER_S="0.5")
    assert with_neighbour(sagemaker, name, fault)["EndpointStatus"] == "InService"

    def restarted() -> bool:
        neighbour_answers(runtime, name)
        return restarts(server, name, "bad") >= 1

    eventually(restarted, "the container to be killed and restarted", interval=POLL_S)
    text = (container_folder(server, name, "bad") / "container.log").read_text()
    held = [int(n) for n in re.findall(r"bad: holding (\d+) MiB", text)]
    assert held and max(held) <= MEMORY_LIMIT_MIB
    assert "reached FAULT_MAX_BYTES" not in text
    neighbour_answers(runtime, name)


def test_fork_and_escape(
    sagemaker: Any, runtime: Any, server: PolyhostProcess, tmp_path: Path
) -> None:
    """Bound: no process of the container is left once DeleteEndpoint took effect, its
    double-forked, setsid grandchild included."""
    name = "f-escape"
    pid_file = tmp_path / "grandchild.pid"
    fault = bad("fork-and-escape", FAULT_PID_FILE=str(pid_file))
    assert with_neighbour(sagemaker, name, fault)["EndpointStatus"] == "InService"
    grandchild = int(eventually(lambda: pid_file.exists() and pid_file.read_text(), "the pid"))
    assert not gone(grandchild)
    neighbour_answers(runtime, name)
    sagemaker.delete_endpoint(EndpointName=name)
    eventually(lambda: gone(grandchild), "the escaped grandchild to be stopped")


def test_fork_and_escape_then_server_stop(tmp_path: Path, start_own_server: ServerFactory) -> None:
    """Bound: no process of the container is left once the server stopped."""
    server = start_fault_server(start_own_server)
    try:
        pid_file = tmp_path / "grandchild.pid"
        fault = bad("fork-and-escape", FAULT_PID_FILE=str(pid_file))
        sagemaker, runtime = server.sagemaker(), server.runtime()
        assert with_neighbour(sagemaker, "escape", fault)["EndpointStatus"] == "InService"
        grandchild = int(eventually(lambda: pid_file.exists() and pid_file.read_text(), "pid"))
        neighbour_answers(runtime, "escape")
        assert not gone(grandchild)
    finally:
        assert server.stop(signal.SIGTERM) == 0
    assert gone(grandchild)


def test_malformed_http(sagemaker: Any, runtime: Any) -> None:
    """Bound: garbage from a container is the container's error (ModelError naming it), never
    the server's (no 500); the neighbour serves."""
    assert with_neighbour(sagemaker, "f-garbage", bad("malformed-http"))["EndpointStatus"] == (
        "InService"
    )
    code, status, message = error_of(
        lambda: invoke(runtime, "f-garbage", b"x", TargetContainerHostname="bad")
    )
    assert (code, status) == ("ModelError", 424), message
    assert "bad" in message
    neighbour_answers(runtime, "f-garbage")


def test_close_mid_response(sagemaker: Any, runtime: Any) -> None:
    """Bound: a response cut short is a ModelError naming the container, not a hang until the
    invocation timeout; the neighbour serves."""
    name = "f-cut"
    assert with_neighbour(sagemaker, name, bad("close-mid-response"))["EndpointStatus"] == (
        "InService"
    )
    code, status, message = error_of(
        lambda: invoke(runtime, name, b"x", TargetContainerHostname="bad")
    )
    assert (code, status) == ("ModelError", 424), message
    assert "Container bad closed the connection" in message
    assert "timed out" not in message
    neighbour_answers(runtime, name)


def test_ping_then_stop_pinging(sagemaker: Any, runtime: Any, server: PolyhostProcess) -> None:
    """Bound: a live container that stops passing /ping is restarted after
    health_check_failures checks in a row; its requests get a 503 saying so meanwhile, the
    restart is counted in the metrics, and it serves again afterwards."""
    name = "f-unhealthy"
    fault = bad("ping-then-stop-pinging", FAULT_AFTER_S="1")
    assert with_neighbour(sagemaker, name, fault)["EndpointStatus"] == "InService"

    def unavailable() -> str | None:
        neighbour_answers(runtime, name)
        try:
            invoke(runtime, name, b"x", TargetContainerHostname="bad")
        except ClientError as error:
            code, _, message = client_error(error)
            assert code == "ServiceUnavailable", error.response
            return message
        return None

    message = eventually(unavailable, "the container to be taken out of service", interval=POLL_S)
    assert f"it failed {HEALTH_FAILURES} health checks in a row and is being restarted" in message
    assert restarts(server, name, "bad") >= 1

    def serves_again() -> bool:
        neighbour_answers(runtime, name)
        try:
            body, _ = invoke(runtime, name, b"x", TargetContainerHostname="bad")
        except ClientError:
            return False
        return bool(body == b"bad:x")

    eventually(serves_again, "the restarted container to serve", interval=POLL_S)
