"""Processes of a benchmark: start on a free port, pin to CPUs, wait until ready, stop cleanly.

Every program a scenario starts runs in its own process group with its output in a log file
under the scenario's work folder, so a stop takes its children too and a failure can quote the
log instead of a bare exit code.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

# The machine has two cores. A load generator pinned to CPU 0 ("LOADGEN") leaves CPU 1 to the
# serving side when that is pinned too ("SERVER"); a scenario says which layout it used.
LOADGEN_CPUS = "0"
SERVER_CPUS = "1"


class StartFailed(RuntimeError):
    """A program did not become ready; the message quotes the end of its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(command: Sequence[str], cpus: str | None) -> list[str]:
    """`command` run through `taskset -c CPUS` when `cpus` is given."""
    return ["taskset", "-c", cpus, *command] if cpus else list(command)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """Status of a GET, or None when nothing answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return None


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Service:
    """One program of a benchmark, started in its own process group with its log in a file."""

    name: str
    command: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                cwd=self.cwd,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll `ready` until true; returns the seconds it took. StartFailed on exit/timeout."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise StartFailed(
                    f"{self.name} exited with {self.process.returncode} before {what}:\n"
                    f"{tail(self.log_path)}"
                )
            if ready():
                return time.monotonic() - started
            time.sleep(0.01)
        raise StartFailed(f"{self.name}: no {what} within {timeout:g} s:\n{tail(self.log_path)}")

    def wait_http(self, url: str, timeout: float = 60.0, status: int = 200) -> float:
        return self.wait_until(lambda: http_status(url) == status, timeout, f"{status} from {url}")

    def rss(self) -> tuple[int, int]:
        """(RSS of the process itself, RSS of it plus all its descendants), in bytes."""
        own = psutil.Process(self.pid)
        total = own.memory_info().rss
        for child in own.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return own.memory_info().rss, total

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM to the process group, SIGKILL to whatever is left after `grace` seconds."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
        self.process = None

    def __enter__(self) -> Service:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
