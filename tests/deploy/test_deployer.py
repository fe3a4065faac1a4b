"""Endpoint lifecycle with real containers: failures, crashes, hangs, updates, restarts."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import (
    create_config,
    create_model,
    deploy,
    echo_container,
    invoke,
    wait_status,
)
from tests.support.server import PolyhostProcess, write_image_config


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolyhostProcess]:
    """A server with a short invocation timeout and a small in-flight bound per container."""
    base: Path = tmp_path_factory.mktemp("deployer")
    proc = PolyhostProcess(
        state_dir=base / "state",
        image_config=write_image_config(base / "images.toml"),
        extra_args=[
            "--invocation-timeout",
            "1.5",
            "--max-inflight",
            "4",
            "--startup-timeout",
            "2",
        ],
    ).start()
    yield proc
    proc.stop()


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = excinfo.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def test_container_that_exits_at_start_fails_the_endpoint(sagemaker: Any) -> None:
    description = deploy(sagemaker, "exits", [echo_container("bad", ECHO_EXIT_AT_START="1")])
    assert description["EndpointStatus"] == "Failed"
    reason = description["FailureReason"]
    assert "Container bad" in reason and "exited with code 3" in reason
    assert "bad: configured to fail at start" in reason  # quotes the container's log


def test_container_that_never_passes_ping_fails_the_endpoint(sagemaker: Any) -> None:
    started = time.monotonic()
    description = deploy(sagemaker, "neverready", [echo_container("nr", ECHO_NEVER_READY="1")])
    assert description["EndpointStatus"] == "Failed"
    reason = description["FailureReason"]
    assert "Container nr for production variant AllTraffic did not pass the ping health" in reason
    assert "within 2 seconds" in reason
    assert "nr: will never be ready" in reason  # quotes the container's log
    assert time.monotonic() - started < 15


def test_invoking_a_failed_endpoint_says_so(runtime: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        invoke(runtime, "exits", b"x")
    code, status, message = error_code(excinfo)
    assert (code, status) == ("ValidationError", 400)
    assert "Failed" in message


def test_timeout_is_a_model_error(sagemaker: Any, runtime: Any) -> None:
    deploy(sagemaker, "slow", [echo_container("a"), echo_container("b")], mode="Direct")
    started = time.monotonic()
    with pytest.raises(ClientError) as excinfo:
        invoke(runtime, "slow", b"x", TargetContainerHostname="a", CustomAttributes="sleep=5")
    elapsed = time.monotonic() - started
    code, status, message = error_code(excinfo)
    assert (code, status) == ("ModelError", 424)
    assert message.startswith(
        "Your invocation timed out while waiting for a response from container a."
    )
    assert elapsed < 4.0


def test_hung_container_does_not_delay_its_neighbour(sagemaker: Any, runtime: Any) -> None:
    """Flood `a` with hanging requests: past its bound it refuses fast; `b` stays fast."""
    if wait_status(sagemaker, "slow")["EndpointStatus"] != "InService":
        deploy(sagemaker, "slow", [echo_container("a"), echo_container("b")], mode="Direct")
    baseline = []
    for _ in range(20):
        started = time.perf_counter()
        invoke(runtime, "slow", b"x", TargetContainerHostname="b")
        baseline.append(time.perf_counter() - started)

    outcomes: list[str] = []

    def hang() -> None:
        try:
            invoke(runtime, "slow", b"x", TargetContainerHostname="a", CustomAttributes="sleep=3")
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(hang) for _ in range(12)]
        time.sleep(0.3)  # let them reach the container
        during = []
        for _ in range(20):
            started = time.perf_counter()
            body, _ = invoke(runtime, "slow", b"x", TargetContainerHostname="b")
            during.append(time.perf_counter() - started)
            assert body == b"b:x"
        concurrent.futures.wait(futures)
    # 4 in flight (the bound) time out; the other 8 are refused at once with 503
    assert outcomes.count("ServiceUnavailable") == 8, outcomes
    assert outcomes.count("ModelError") == 4, outcomes
    baseline.sort()
    during.sort()
    # b's median latency while a hangs stays in the same range as before (loose: noisy machine)
    assert during[10] < max(0.05, baseline[10] * 5), (baseline, during)


def test_crashed_container_restarts_while_others_serve(sagemaker: Any, runtime: Any) -> None:
    deploy(sagemaker, "crashy", [echo_container("a"), echo_container("b")], mode="Direct")
    with pytest.raises(ClientError) as excinfo:
        invoke(runtime, "crashy", b"x", TargetContainerHostname="a", CustomAttributes="crash=1")
    assert error_code(excinfo)[0] == "ModelError"
    saw_unavailable = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body, _ = invoke(runtime, "crashy", b"x", TargetContainerHostname="b")
        assert body == b"b:x"  # the neighbour never fails
        try:
            body, _ = invoke(runtime, "crashy", b"x", TargetContainerHostname="a")
        except ClientError as error:
            code, status, message = error_code(pytest.ExceptionInfo.from_exc_info(
                (type(error), error, error.__traceback__)
            ))  # fmt: skip
            assert (code, status) == ("ServiceUnavailable", 503), message
            assert "Container a" in message
            saw_unavailable = True
            time.sleep(0.02)
            continue
        assert body == b"a:x"
        break
    else:
        pytest.fail("container a did not come back")
    assert saw_unavailable


def test_update_under_load_loses_no_request(sagemaker: Any, runtime: Any) -> None:
    deploy(sagemaker, "bluegreen", [echo_container("v1")])
    create_model(sagemaker, "bluegreen-v2", [echo_container("v2")])
    create_config(sagemaker, "bluegreen-v2", [("AllTraffic", "bluegreen-v2", 1, 1.0)])
    stop = threading.Event()
    answers: list[bytes] = []
    failures: list[str] = []

    def load() -> None:
        client = runtime
        while not stop.is_set():
            try:
                answers.append(invoke(client, "bluegreen", b"x")[0])
            except ClientError as error:
                failures.append(str(error))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    sagemaker.update_endpoint(EndpointName="bluegreen", EndpointConfigName="bluegreen-v2")
    assert sagemaker.describe_endpoint(EndpointName="bluegreen")["EndpointStatus"] == "Updating"
    description = wait_status(sagemaker, "bluegreen")
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join()
    assert description["EndpointStatus"] == "InService"
    assert description["EndpointConfigName"] == "bluegreen-v2"
    assert failures == []
    assert b"v1:x" in answers and answers[-1] == b"v2:x"
    # once switched, never back to the old group
    first_v2 = answers.index(b"v2:x")
    assert b"v1:x" not in answers[first_v2 + 8 :]


def test_failed_update_keeps_old_config_serving(sagemaker: Any, runtime: Any) -> None:
    deploy(sagemaker, "keepold", [echo_container("old")])
    create_model(sagemaker, "keepold-bad", [echo_container("new", ECHO_EXIT_AT_START="1")])
    create_config(sagemaker, "keepold-bad", [("AllTraffic", "keepold-bad", 1, 1.0)])
    sagemaker.update_endpoint(EndpointName="keepold", EndpointConfigName="keepold-bad")
    description = wait_status(sagemaker, "keepold")
    assert description["EndpointStatus"] == "InService"
    assert description["EndpointConfigName"] == "keepold"
    assert "configured to fail at start" in description["FailureReason"]
    assert invoke(runtime, "keepold", b"x")[0] == b"old:x"


def test_delete_endpoint_stops_its_containers(sagemaker: Any, runtime: Any) -> None:
    deploy(sagemaker, "gone", [echo_container("g")])
    port = int(invoke(runtime, "gone", b"x", CustomAttributes="whoami=1")[0].split(b"@")[1])
    sagemaker.delete_endpoint(EndpointName="gone")
    sagemaker.get_waiter("endpoint_deleted").wait(
        EndpointName="gone", WaiterConfig={"Delay": 1, "MaxAttempts": 10}
    )
    import socket

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                break
        time.sleep(0.05)
    else:
        pytest.fail("container still listening after DeleteEndpoint")


def test_kill9_and_restart_serves_again(server: PolyhostProcess) -> None:
    sagemaker = server.sagemaker()
    deploy(sagemaker, "survivor", [echo_container("s1"), echo_container("s2")], mode="Direct")
    server.kill9()
    server.restart()
    sagemaker = server.sagemaker()
    runtime = server.runtime()
    assert sagemaker.describe_endpoint(EndpointName="survivor")["EndpointStatus"] == "InService"
    deadline = time.monotonic() + 30
    while True:  # containers are brought back in the background; meanwhile a retryable 503
        try:
            body = invoke(runtime, "survivor", b"x", TargetContainerHostname="s2")[0]
            break
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ServiceUnavailable", error
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert body == b"s2:x"
