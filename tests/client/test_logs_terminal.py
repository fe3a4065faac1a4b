"""`polyhost logs` on a terminal shows a container's control characters as visible escapes.

The container (tests/support/containers/hostile.py, HOSTILE=escapes) prints a clipboard write
(OSC 52), a title change, a screen clear, a cursor-position query, a bell and a C1 CSI. The
command runs on a real pseudo-terminal: what reaches the terminal must hold none of those bytes,
only their visible escapes; `--raw` passes them through; a pipe gets the bytes as they are.
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from polyhost.client.logs import StreamPrinter
from polyhost.client.terminal import visible
from polyhost.client.top import render
from tests.support.endpoints import deploy
from tests.support.server import CONTAINERS, PolyhostProcess, ServerFactory, write_image_config

HOSTILE_IMAGE = "polyhost-test/hostile:1"
ENDPOINT = "escapes"
# The bytes a terminal would obey (ESC, BEL, CR, the UTF-8 of U+009B).
OBEYED = (b"\x1b", b"\x07", b"\r", "\x9b".encode())
SHOWN = (
    r"clipboard:\x1b]52;c;cm0gLXJmIH4K\x07 title:\x1b]0;owned\x07 clear:\x1b[2J\x1b[H "
    r"query:\x1b[6n bell:\x07 c1:\x9b31m end"
)


def image_config(path: Path) -> Path:
    write_image_config(path)
    with open(path, "a", encoding="utf-8") as config:
        config.write(
            f'[images."{HOSTILE_IMAGE}"]\n'
            f'command = ["{sys.executable}", "{CONTAINERS / "hostile.py"}"]\n'
        )
    return path


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    proc = start_server(name="logs-terminal", images=image_config)
    sagemaker = proc.sagemaker()
    container: dict[str, Any] = {
        "Image": HOSTILE_IMAGE,
        "Environment": {"HOSTILE": "escapes", "HOSTILE_NAME": "h"},
    }
    assert deploy(sagemaker, ENDPOINT, [container])["EndpointStatus"] == "InService"
    deadline = time.monotonic() + 30
    while b" end" not in piped(proc):  # the container's line is in its log
        assert time.monotonic() < deadline, "the container's line never reached its log"
        time.sleep(0.1)
    return proc


def piped(server: PolyhostProcess, *args: str) -> bytes:
    return subprocess.run(
        [sys.executable, "-m", "polyhost", "logs", ENDPOINT, *args],
        capture_output=True,
        env={**os.environ, "POLYHOST_URL": server.url},
        timeout=60,
        check=True,
    ).stdout


def on_terminal(server: PolyhostProcess, *args: str) -> bytes:
    """What `polyhost logs` writes to a pseudo-terminal (its output processing turned off, so
    the bytes read are the bytes written)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command, with the pty as its terminal
        os.execve(
            sys.executable,
            [sys.executable, "-m", "polyhost", "logs", ENDPOINT, *args],
            {**os.environ, "POLYHOST_URL": server.url},
        )
    attributes = termios.tcgetattr(fd)
    attributes[1] &= ~termios.OPOST  # no \n -> \r\n on the way out
    termios.tcsetattr(fd, termios.TCSANOW, attributes)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks)


def test_a_terminal_is_shown_escapes_not_sent_them(server: PolyhostProcess) -> None:
    shown = on_terminal(server)
    assert SHOWN.encode() in shown, shown
    for obeyed in OBEYED:
        assert obeyed not in shown, (obeyed, shown)


def test_raw_passes_them_to_the_terminal(server: PolyhostProcess) -> None:
    shown = on_terminal(server, "--raw")
    assert b"clipboard:\x1b]52;c;cm0gLXJmIH4K\x07 " in shown
    assert "c1:\x9b31m".encode() in shown


def test_a_pipe_gets_the_bytes_as_written(server: PolyhostProcess) -> None:
    assert b"clear:\x1b[2J\x1b[H query:\x1b[6n" in piped(server)


def test_tab_and_newline_lay_out_the_text() -> None:
    assert visible("a\tb\nc\r\x00\x7f\u0085é") == "a\tb\nc\\r\\x00\\x7f\\x85é"


class FakeTerminal(io.BytesIO):
    def isatty(self) -> bool:
        return True


def test_labels_and_lines_split_across_writes_are_escaped() -> None:
    out = FakeTerminal()
    printer = StreamPrinter(out, labelled=True, escape=True)
    printer.write("v/i-0/h\x1b", "one \x1b[2")
    printer.write("v/i-0/h\x1b", "J\n")
    printer.finish()
    assert out.getvalue() == b"[v/i-0/h\\x1b] one \\x1b[2J\n"


def test_top_shows_names_through_the_same_escaping() -> None:
    row = {"endpoint": "e\x1b]0;owned\x07", "variant": "v", "instance": "i-0", "hostname": "h"}
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(
        render({"containers": [row]}, "http://x", "requests", None)
    )
    assert r"e\x1b]0;owned\x07" in out.getvalue()
    assert "\x1b" not in out.getvalue()
