"""Endpoint lifecycle with real containers: failures, crashes, hangs, updates, restarts."""

from __future__ import annotations

import concurrent.futures
import socket
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
from tests.support.errors import client_error
from tests.support.server import PolyhostProcess, write_image_config
from tests.support.waiting import count_files, eventually


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


@pytest.fixture
def patient_server(tmp_path: Path) -> Iterator[PolyhostProcess]:
    """The same in-flight bound, but invocations may last: a held request stays in flight
    until the test releases it, however slow the machine is."""
    proc = PolyhostProcess(
        state_dir=tmp_path / "state",
        image_config=write_image_config(tmp_path / "images.toml"),
        extra_args=["--invocation-timeout", "300", "--max-inflight", "4"],
    ).start()
    yield proc
    proc.stop()


def test_container_that_exits_at_start_fails_the_endpoint(sagemaker: Any) -> None:
    description = deploy(sagemaker, "exits", [echo_container("bad", ECHO_EXIT_AT_START="1")])
    assert description["EndpointStatus"] == "Failed"
    reason = description["FailureReason"]
    assert "Container bad" in reason and "exited with code 3" in reason
    assert "bad: configured to fail at start" in reason  # quotes the container's log


def test_container_that_never_passes_ping_fails_the_endpoint(sagemaker: Any) -> None:
    description = deploy(sagemaker, "neverready", [echo_container("nr", ECHO_NEVER_READY="1")])
    assert description["EndpointStatus"] == "Failed"
    reason = description["FailureReason"]
    assert "Container nr for production variant AllTraffic did not pass the ping health" in reason
    assert "within 2 seconds" in reason
    assert "nr: will never be ready" in reason  # quotes the container's log


def test_invoking_a_failed_endpoint_says_so(runtime: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        invoke(runtime, "exits", b"x")
    code, status, message = client_error(excinfo)
    assert (code, status) == ("ValidationError", 400)
    assert "Failed" in message


def test_timeout_is_a_model_error(sagemaker: Any, runtime: Any, tmp_path: Path) -> None:
    deploy(sagemaker, "slow", [echo_container("a"), echo_container("b")], mode="Direct")
    arrived = tmp_path / "arrived"
    arrived.mkdir()
    never = tmp_path / "never"  # `a` answers once this exists: not before the test is over
    try:
        with pytest.raises(ClientError) as excinfo:
            invoke(
                runtime,
                "slow",
                b"x",
                TargetContainerHostname="a",
                CustomAttributes=f"arrived={arrived},hold={never}",
            )
    finally:
        never.touch()
    code, status, message = client_error(excinfo)
    assert (code, status) == ("ModelError", 424)
    assert message.startswith(
        "Your invocation timed out while waiting for a response from container a."
    )
    assert message.endswith("(Timeout: 1.5 s.)")
    assert count_files(arrived) == 1  # the container had the request: it was its answer missing


def test_a_full_container_refuses_at_once_while_its_neighbour_serves(
    patient_server: PolyhostProcess, tmp_path: Path
) -> None:
    """`a` holds as many requests as its bound allows, until the test lets them go: past the
    bound it refuses with a 503 instead of queueing, and `b` keeps answering meanwhile.
    (`python -m bench isolation` measures b's latency in that state.)"""
    sagemaker, runtime = patient_server.sagemaker(), patient_server.runtime()
    description = deploy(sagemaker, "held", [echo_container("a"), echo_container("b")], "Direct")
    assert description["EndpointStatus"] == "InService", description.get("FailureReason")
    arrived = tmp_path / "arrived"
    arrived.mkdir()
    release = tmp_path / "release"

    def held(index: int) -> bytes:
        attributes = f"arrived={arrived},hold={release}"
        body = f"held{index}".encode()
        return invoke(
            runtime, "held", body, TargetContainerHostname="a", CustomAttributes=attributes
        )[0]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        try:
            futures = [pool.submit(held, index) for index in range(4)]
            eventually(lambda: count_files(arrived) == 4, "the 4 held requests to reach `a`")
            for _ in range(8):
                with pytest.raises(ClientError) as excinfo:
                    invoke(
                        runtime,
                        "held",
                        b"more",
                        TargetContainerHostname="a",
                        CustomAttributes=f"arrived={arrived}",
                    )
                code, status, message = client_error(excinfo)
                assert (code, status) == ("ServiceUnavailable", 503), message
                assert "already has 4 requests in flight, its limit" in message
            assert count_files(arrived) == 4  # refused by polyhost: `a` never saw them
            for index in range(20):
                body = f"{index}".encode()
                assert invoke(runtime, "held", body, TargetContainerHostname="b")[0] == b"b:" + body
            # `b` answered all of that while every request to `a` was still held.
            assert not any(future.done() for future in futures)
        finally:
            release.touch()
        answers = [future.result() for future in futures]
    assert answers == [f"a:held{index}".encode() for index in range(4)]
    # The released requests gave their places back.
    assert invoke(runtime, "held", b"again", TargetContainerHostname="a")[0] == b"a:again"


def test_crashed_container_restarts_while_others_serve(
    sagemaker: Any, runtime: Any, tmp_path: Path
) -> None:
    """`a` crashes; its restart cannot pass /ping until the test lets it, so the time in
    between, when `a` is refused and `b` serves, is there for certain."""
    a_ready = tmp_path / "a-ready"
    a_ready.touch()
    a = echo_container("a", ECHO_READY_FILE=str(a_ready))
    description = deploy(
        sagemaker,
        "crashy",
        [a, echo_container("b")],
        mode="Direct",
        ContainerStartupHealthCheckTimeoutInSeconds=300,
    )
    assert description["EndpointStatus"] == "InService", description.get("FailureReason")
    a_ready.unlink()  # the running `a` is not asked again; its restart will be
    with pytest.raises(ClientError) as excinfo:
        invoke(runtime, "crashy", b"x", TargetContainerHostname="a", CustomAttributes="crash=1")
    assert client_error(excinfo).code == "ModelError"

    def a_marked_down() -> str | None:
        assert invoke(runtime, "crashy", b"x", TargetContainerHostname="b")[0] == b"b:x"
        with pytest.raises(ClientError) as excinfo:
            invoke(runtime, "crashy", b"x", TargetContainerHostname="a")
        code, status, message = client_error(excinfo)
        # Until the supervisor has seen the exit, a request may still reach the dying process.
        assert (code, status) in {("ServiceUnavailable", 503), ("ModelError", 424)}, message
        return message if "is being restarted" in message else None

    message = eventually(a_marked_down, "polyhost to see that `a` exited")
    assert message.startswith(
        "Container a of endpoint crashy is unavailable: it exited with code 7 and is being "
        "restarted"
    )
    for _ in range(5):  # and so it stays while the restarted `a` is not ready
        assert invoke(runtime, "crashy", b"x", TargetContainerHostname="b")[0] == b"b:x"
        with pytest.raises(ClientError) as excinfo:
            invoke(runtime, "crashy", b"x", TargetContainerHostname="a")
        code, status, message = client_error(excinfo)
        assert (code, status) == ("ServiceUnavailable", 503), message
        assert "Container a of endpoint crashy is unavailable" in message

    a_ready.touch()

    def a_answers() -> bytes | None:
        assert invoke(runtime, "crashy", b"x", TargetContainerHostname="b")[0] == b"b:x"
        try:
            return invoke(runtime, "crashy", b"x", TargetContainerHostname="a")[0]
        except ClientError as error:
            code, status, message = client_error(error)
            assert (code, status) == ("ServiceUnavailable", 503), message
            return None

    assert eventually(a_answers, "the restarted `a` to answer") == b"a:x"


def test_update_under_load_loses_no_request(sagemaker: Any, runtime: Any, tmp_path: Path) -> None:
    """Four clients invoke without pause while the endpoint moves from v1 to v2. v2 passes its
    /ping only once the test says so, so the update is seen in progress for certain."""
    deploy(sagemaker, "bluegreen", [echo_container("v1")])
    v2_ready = tmp_path / "v2-ready"
    create_model(sagemaker, "bluegreen-v2", [echo_container("v2", ECHO_READY_FILE=str(v2_ready))])
    create_config(
        sagemaker,
        "bluegreen-v2",
        [("AllTraffic", "bluegreen-v2", 1, 1.0)],
        ContainerStartupHealthCheckTimeoutInSeconds=300,
    )
    stop = threading.Event()
    answers: list[list[bytes]] = [[] for _ in range(4)]  # per client, in the order received
    failures: list[str] = []

    def load(mine: list[bytes]) -> None:
        while not stop.is_set():
            try:
                mine.append(invoke(runtime, "bluegreen", b"x")[0])
            except ClientError as error:
                failures.append(str(error))

    def each_client_got(body: bytes, after: list[int]) -> bool:
        return all(body in mine[start:] for mine, start in zip(answers, after, strict=True))

    threads = [threading.Thread(target=load, args=(mine,)) for mine in answers]
    for thread in threads:
        thread.start()
    try:
        eventually(lambda: each_client_got(b"v1:x", [0] * 4), "every client to be served by v1")
        sagemaker.update_endpoint(EndpointName="bluegreen", EndpointConfigName="bluegreen-v2")
        updating = sagemaker.describe_endpoint(EndpointName="bluegreen")
        assert updating["EndpointStatus"] == "Updating"
        assert updating["EndpointConfigName"] == "bluegreen"
        # While v2 is not ready, v1 goes on serving every client.
        marks = [len(mine) for mine in answers]
        eventually(lambda: each_client_got(b"v1:x", marks), "v1 to serve during the update")
        v2_ready.touch()
        description = wait_status(sagemaker, "bluegreen")
        assert description["EndpointStatus"] == "InService", description.get("FailureReason")
        assert description["EndpointConfigName"] == "bluegreen-v2"
        marks = [len(mine) for mine in answers]
        eventually(lambda: each_client_got(b"v2:x", marks), "v2 to serve every client")
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    for mine in answers:
        # Each client saw v1, then v2, and once switched never went back to the old group.
        switched = mine.index(b"v2:x")
        assert set(mine[:switched]) == {b"v1:x"}
        assert set(mine[switched:]) == {b"v2:x"}, mine[switched:]


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

    def refused() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) != 0

    eventually(refused, "the container to stop listening after DeleteEndpoint")


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
            assert client_error(error).code == "ServiceUnavailable", error
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert body == b"s2:x"
