"""Run serving stacks as real programs on loopback ports, and talk to them with urllib.

A stack is started exactly as the process backend starts one: `python -m MODULE` with
SAGEMAKER_BIND_TO_PORT, SM_MODEL_DIR and POLYHOST_BIND_HOST. `start_all` launches several at
once and then waits for each, so slow framework imports overlap instead of adding up.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.server import free_port

_INHERITED_PREFIXES = ("SAGEMAKER_", "SM_", "POLYHOST_")


class StackExited(Exception):
    """The stack process ended before it became healthy."""

    def __init__(self, code: int, output: str) -> None:
        super().__init__(f"stack exited with {code}:\n{output}")
        self.code = code
        self.output = output


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


@dataclass
class StackProcess:
    module: str  # e.g. "polyhost.stacks.sklearn", or a script path
    model_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()  # after the module, e.g. ("--sagemaker-image", URI)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    started_at: float = 0.0
    healthy_after: float | None = None  # seconds from launch to the first healthy /ping

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> StackProcess:
        self.port = self.port or free_port()
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(_INHERITED_PREFIXES)
        }
        environment.update(
            SAGEMAKER_BIND_TO_PORT=str(self.port),
            SM_MODEL_DIR=str(self.model_dir),
            POLYHOST_BIND_HOST="127.0.0.1",
        )
        environment.update(self.env)
        self.log_path = self.model_dir.parent / f"{self.model_dir.name}-{self.port}.log"
        if self.module.endswith(".py"):
            command = [sys.executable, self.module]
        else:
            command = [sys.executable, "-m", self.module]
        command += self.args
        with open(self.log_path, "wb") as log:
            self.started_at = time.monotonic()
            self.process = subprocess.Popen(
                command, env=environment, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def wait_healthy(self, timeout: float = 120.0) -> StackProcess:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise StackExited(code, self.output())
            if self.ping() == 200:
                self.healthy_after = time.monotonic() - self.started_at
                return self
            time.sleep(0.02)
        raise TimeoutError(f"{self.module} not healthy in {timeout}s:\n{self.output()}")

    def wait_exit(self, timeout: float = 120.0) -> int:
        """For a stack expected to fail at start: its exit code (it must not become healthy)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                return code
            if self.ping() == 200:
                raise AssertionError(f"{self.module} became healthy:\n{self.output()}")
            time.sleep(0.05)
        raise TimeoutError(f"{self.module} still running after {timeout}s:\n{self.output()}")

    def ping(self) -> int | None:
        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=2) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return None

    def invoke(
        self,
        body: bytes | str,
        content_type: str | None = "application/json",
        accept: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Answer:
        return self.request("POST", "/invocations", body, content_type, accept, headers, timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        content_type: str | None = None,
        accept: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Answer:
        # http.client rather than urllib.request: urllib adds a form Content-Type of its own
        # when none is given, and these tests need to send requests without one.
        data = body.encode() if isinstance(body, str) else body
        sent: dict[str, str] = {}
        if content_type is not None:
            sent["Content-Type"] = content_type
        if accept is not None:
            sent["Accept"] = accept
        sent.update(headers or {})
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=data, headers=sent)
            answer = connection.getresponse()
            return Answer(answer.status, _lower(answer.getheaders()), answer.read())
        finally:
            connection.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def rss_bytes(self) -> int:
        """Resident memory of the stack process now (Linux /proc)."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(timeout=timeout)


def _lower(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {key.lower(): value for key, value in items}


def start_all(stacks: Mapping[str, StackProcess], timeout: float = 180.0) -> None:
    """Launch every stack, then wait for each to be healthy; stop them all if one fails."""
    for stack in stacks.values():
        stack.launch()
    try:
        for stack in stacks.values():
            stack.wait_healthy(timeout)
    except BaseException:
        stop_all(stacks.values())
        raise


def stop_all(stacks: Iterable[StackProcess]) -> None:
    for stack in stacks:
        stack.stop()
