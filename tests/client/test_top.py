"""`polyhost top` under a real pseudo-terminal, against a real server's admin listener.

The command runs as its own process on the pty's slave side (as in a terminal); the test reads
what it draws from the master side and types Ctrl-C into it. Every wait is for something to
appear on the screen or for the process to end, with generous deadlines only against a hang.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import secrets
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.support.endpoints import deploy, echo_container, invoke
from tests.support.server import PolyhostProcess, ServerFactory, default_sigint, free_port

_ANSI = re.compile(
    rb"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()][0-9A-Za-z]|[=>78])"
)


class Terminal:
    """`polyhost top ...` on a pseudo-terminal of 50 rows by 220 columns."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: becomes the command, the pty is its terminal
            default_sigint()  # Ctrl-C must interrupt it even where the suite ignores SIGINT
            # Its size is set here, before the command starts: set by the parent only, a
            # command quick to read it (or a parent slow to set it) saw the default 80 columns,
            # and the hint on an empty server wrapped onto two lines.
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 220, 0, 0))
            os.execve(
                sys.executable,
                [sys.executable, "-m", "polyhost", "top", *args],
                # COLUMNS and LINES as the pty's own size: a parent's (pytest-xdist's workers
                # set 80x24) would override it for rich.
                {
                    **os.environ,
                    "TERM": "xterm-256color",
                    "COLUMNS": "220",
                    "LINES": "50",
                    **(env or {}),
                },
            )
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 220, 0, 0))
        self.screen = b""
        self.status: int | None = None

    def text(self) -> str:
        return _ANSI.sub(b"", self.screen).decode("utf-8", "replace")

    def _read(self, timeout: float) -> bool:
        """Read what is there within `timeout`; False at end of output."""
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        self.screen += chunk
        return bool(chunk)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text()):
            assert time.monotonic() < deadline, f"{pattern!r} never shown:\n{self.text()[-3000:]}"
            if not self._read(0.5):
                assert re.search(pattern, self.text()), f"ended without {pattern!r}:\n{self.text()}"
                return

    def wait_exit(self, timeout: float = 60.0) -> int:
        deadline = time.monotonic() + timeout
        while self._read(0.5):
            assert time.monotonic() < deadline, f"still running:\n{self.text()[-3000:]}"
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
                return self.status
            assert time.monotonic() < deadline, "the process never exited"
            time.sleep(0.05)

    def close(self) -> None:
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except ProcessLookupError:
                pass
        os.close(self.fd)


@pytest.fixture
def own_server(start_own_server: ServerFactory) -> PolyhostProcess:
    """A server this test may stop, serving two endpoints."""
    server = start_own_server()
    sagemaker, runtime = server.sagemaker(), server.runtime()
    deploy(sagemaker, "topped", [echo_container("alpha"), echo_container("beta")], mode="Direct")
    deploy(sagemaker, "other", [echo_container("gamma")])
    invoke(runtime, "topped", b"x", TargetContainerHostname="alpha")
    return server


def test_shows_every_container_and_exits_when_the_server_stops(
    own_server: PolyhostProcess,
) -> None:
    terminal = Terminal("--admin-url", own_server.admin_url, "--sort", "cpu")
    try:
        terminal.wait_for(r"alpha")
        terminal.wait_for(r"beta")
        terminal.wait_for(r"gamma")
        assert "sorted by cpu" in terminal.text()
        assert own_server.stop() == 0
        assert terminal.wait_exit() == 0
        assert f"polyhost top: the server at {own_server.admin_url} went away" in terminal.text()
    finally:
        terminal.close()


def test_ctrl_c_quits_and_the_endpoint_filter_narrows(own_server: PolyhostProcess) -> None:
    terminal = Terminal("--endpoint", "other", env={"POLYHOST_ADMIN_URL": own_server.admin_url})
    try:
        terminal.wait_for(r"1 container\(s\), endpoint other")
        assert "gamma" in terminal.text()
        assert "alpha" not in terminal.text() and "beta" not in terminal.text()
        os.write(terminal.fd, b"\x03")  # Ctrl-C, through the terminal's line discipline
        assert terminal.wait_exit() == 0
        assert "polyhost top: stopped" in terminal.text()
        assert "Traceback" not in terminal.text()
    finally:
        terminal.close()


def test_a_token_from_the_environment_and_a_refused_one(tmp_path: Path) -> None:
    token = secrets.token_hex(24)
    token_file = tmp_path / "admin.token"
    token_file.write_text(token, encoding="utf-8")
    server = PolyhostProcess(
        state_dir=tmp_path / "state", extra_args=["--admin-token-file", str(token_file)]
    ).start()
    try:
        terminal = Terminal("--admin-url", server.admin_url, env={"POLYHOST_ADMIN_TOKEN": token})
        try:
            terminal.wait_for(r"0 container\(s\), all endpoints")
            # What to do on an empty server: in the same frame, which may reach the terminal
            # in more than one read.
            terminal.wait_for(r"polyhost deploy")
            os.write(terminal.fd, b"\x03")
            assert terminal.wait_exit() == 0
        finally:
            terminal.close()
        wrong = tmp_path / "wrong.token"
        wrong.write_text("not-the-token-at-all", encoding="utf-8")
        refused = subprocess.run(
            [sys.executable, "-m", "polyhost", "top", "--admin-url", server.admin_url,
             "--admin-token-file", str(wrong)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert refused.returncode == 1 and "refused" in refused.stderr
        assert "not-the-token-at-all" not in refused.stderr + refused.stdout
    finally:
        server.stop()


def test_no_server_at_all_is_a_failure() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "polyhost", "top", "--admin-url", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and "cannot reach the admin listener" in done.stderr
