"""The /ping + /invocations contract server, driven by a small service run as a real program."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyhost.stacks.toolkit.server import INLINE_AFTER
from tests.stacks.conftest import Answer, StackProcess
from tests.support.waiting import eventually

SERVICE = """
import os, sys, threading, time
from pathlib import Path
from polyhost.stacks.toolkit.server import InvocationError, InvocationResponse, serve

GATE = Path(os.environ["GATE"])


class Service:
    def load(self):
        if os.environ.get("FAIL_LOAD"):
            raise RuntimeError("weights are corrupt")
        if os.environ.get("EXIT_LOAD"):
            sys.exit(4)
        while not GATE.exists():  # the test opens the gate to finish "loading"
            time.sleep(0.01)

    def invoke(self, request):
        attrs = request.custom_attributes or ""
        if attrs == "error":
            raise InvocationError(418, "short and stout")
        if attrs == "crash":
            raise ValueError("the handler broke")
        if attrs == "exit":
            sys.exit(3)
        if attrs.startswith("sleep="):
            time.sleep(float(attrs[6:]))
        if attrs.startswith("hold="):  # say it arrived, then answer once the test releases it
            arrived, release = (Path(part) for part in attrs[5:].split(":"))
            arrived.touch()
            deadline = time.monotonic() + 300
            while not release.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        if attrs == "thread":  # where it runs: a worker, or the event loop's (main) thread
            attrs = "thread=" + threading.current_thread().name
        return InvocationResponse(
            body=request.body,
            content_type=request.content_type or "none",
            custom_attributes="seen=" + attrs,
        )


serve(Service())
"""


def _service(tmp_path: Path, name: str, **env: str) -> StackProcess:
    script = tmp_path / f"{name}.py"
    script.write_text(SERVICE)
    model = tmp_path / name
    model.mkdir()
    return StackProcess(str(script), model, env={"GATE": str(tmp_path / f"{name}.gate"), **env})


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[StackProcess, Path]]:
    tmp_path = tmp_path_factory.mktemp("server")
    stack = _service(tmp_path, "gated").launch()
    yield stack, tmp_path / "gated.gate"
    stack.stop()


@pytest.fixture(scope="module")
def service(gated: tuple[StackProcess, Path]) -> StackProcess:
    stack, gate = gated
    deadline = time.monotonic() + 30
    while stack.ping() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    # Listening but still loading: unhealthy, and invocations are refused.
    assert stack.ping() == 503
    refused = stack.invoke(b"{}")
    assert refused.status == 503 and refused.json() == {"message": "model is loading"}
    gate.touch()
    return stack.wait_healthy(30)


def test_echo_with_content_type_and_custom_attributes(service: StackProcess) -> None:
    answer = service.invoke(
        b"\x00\x01binary",
        "application/x-thing",
        headers={"X-Amzn-SageMaker-Custom-Attributes": "a=1"},
    )
    assert answer.status == 200
    assert answer.body == b"\x00\x01binary"
    assert answer.content_type == "application/x-thing"
    assert answer.headers["x-amzn-sagemaker-custom-attributes"] == "seen=a=1"


def test_unknown_path_and_method(service: StackProcess) -> None:
    assert service.request("GET", "/nothing").status == 404
    assert service.request("GET", "/invocations").status == 405


def test_invocation_error_keeps_its_status(service: StackProcess) -> None:
    answer = _with_attrs(service, "error")
    assert answer.status == 418
    assert answer.json() == {"message": "short and stout"}


def test_handler_exception_is_500_with_message_and_no_traceback(service: StackProcess) -> None:
    answer = _with_attrs(service, "crash")
    assert answer.status == 500
    assert answer.json() == {"message": "ValueError: the handler broke"}
    assert b"Traceback" not in answer.body
    assert "Traceback" in service.output()  # the log keeps it


def test_handler_calling_exit_does_not_stop_the_server(service: StackProcess) -> None:
    answer = _with_attrs(service, "exit")
    assert answer.status == 500 and "exit" in answer.json()["message"]
    assert service.ping() == 200


def _ping_answered_while_held(service: StackProcess, tmp_path: Path) -> None:
    arrived, release = tmp_path / "arrived", tmp_path / "release"
    busy: list[Answer] = []
    worker = threading.Thread(
        target=lambda: busy.append(_with_attrs(service, f"hold={arrived}:{release}"))
    )
    worker.start()
    try:
        eventually(arrived.exists, "the prediction to reach the handler")
        # The handler cannot finish before `release` exists: /ping is answered beside it (were
        # it queued behind the handler, this would time out instead).
        assert service.request("GET", "/ping", timeout=60).status == 200
        assert busy == []
    finally:
        release.touch()
        worker.join()
    assert busy[0].status == 200
    assert busy[0].headers["x-amzn-sagemaker-custom-attributes"] == f"seen=hold={arrived}:{release}"


def test_ping_answers_while_a_prediction_is_busy(service: StackProcess, tmp_path: Path) -> None:
    _ping_answered_while_held(service, tmp_path)


def test_after_a_long_invocation_predictions_go_to_the_worker_again(
    service: StackProcess, tmp_path: Path
) -> None:
    """Short invocations in a row run on the event loop (stacks/toolkit/server.py); one that
    runs long sends the next ones to the worker, where /ping is answered beside them."""
    for _ in range(INLINE_AFTER + 3):
        assert service.invoke(b"short").status == 200
    assert _thread(service) == "MainThread"
    assert _with_attrs(service, "sleep=0.2").status == 200
    assert _thread(service) == "invoke-0"
    _ping_answered_while_held(service, tmp_path)


def _thread(service: StackProcess) -> str:
    seen = _with_attrs(service, "thread").headers["x-amzn-sagemaker-custom-attributes"]
    return seen.removeprefix("seen=thread=")


def test_inline_invocations_can_be_turned_off(tmp_path: Path) -> None:
    stack = _service(tmp_path, "threaded", POLYHOST_INLINE_INVOCATIONS="false").launch()
    try:
        (tmp_path / "threaded.gate").touch()
        stack.wait_healthy(30)
        for _ in range(INLINE_AFTER + 3):
            assert stack.invoke(b"short").status == 200
        assert _thread(stack) == "invoke-0"
    finally:
        stack.stop()


def test_load_failure_exits_non_zero_with_the_reason(tmp_path: Path) -> None:
    failing = _service(tmp_path, "failing", FAIL_LOAD="1").launch()
    assert failing.wait_exit(30) == 1
    assert "model failed to load: RuntimeError: weights are corrupt" in failing.output()
    exiting = _service(tmp_path, "exiting", EXIT_LOAD="1").launch()
    assert exiting.wait_exit(30) == 1
    assert "model failed to load: SystemExit: 4" in exiting.output()


def test_sigterm_stops_the_server(tmp_path: Path) -> None:
    stack = _service(tmp_path, "stopping").launch()
    (tmp_path / "stopping.gate").touch()
    stack.wait_healthy(30)
    # uvicorn shuts down gracefully, then re-raises the signal: the status is "killed by TERM"
    # (had it ignored SIGTERM, stop() would have had to kill it: -SIGKILL).
    assert stack.stop(timeout=60) in (0, -signal.SIGTERM)


def _with_attrs(stack: StackProcess, attrs: str) -> Answer:
    return stack.invoke(b"x", "text/plain", headers={"X-Amzn-SageMaker-Custom-Attributes": attrs})
