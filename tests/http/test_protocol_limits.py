"""The listener's bounds, at their edges: what is just allowed passes, one byte more is refused.

Request line (414), one header, the header count and the whole head (431), a body far past its
cap (answered without draining it), head and body deadlines (408), and a connection cap that the
open-file limit lowers. Raw sockets against real servers, as in test_protocol.py.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.reliability.hostile_client import (
    answers_on,
    connect,
    connection_flood,
    parse,
    ping,
    push,
    read_one,
    read_to_close,
)
from tests.support.server import PolyhostProcess, ServerFactory, free_port

KiB = 1024
MiB = 1024 * KiB
LINE_CAP = 8 * KiB
HEADER_CAP = 16 * KiB
HEAD_CAP = 64 * KiB
COUNT_CAP = 100


def exchange(server: PolyhostProcess, request: bytes) -> tuple[int | None, dict[str, str], bytes]:
    with connect(server.port) as sock:
        sock.sendall(request)
        raw, _ = read_one(sock)
    return parse(raw)


def get(path: bytes, headers: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"


def error_code(body: bytes) -> str:
    answer = json.loads(body)
    assert isinstance(answer["message"], str) and answer["message"]
    return str(answer["__type"])


# -- sizes of the head -------------------------------------------------------------------------


def test_a_url_at_the_cap_is_served_and_one_byte_more_is_414(server: PolyhostProcess) -> None:
    path = b"/" + b"a" * (LINE_CAP - 1)
    assert exchange(server, get(path))[0] == 404  # no such route, but read in full
    status, headers, body = exchange(server, get(path + b"a"))
    assert (status, error_code(body)) == (414, "RequestURITooLong")
    assert headers["content-type"] == "application/json"
    assert headers.get("connection") == "close"
    assert b"8192 bytes" in body


def test_one_header_at_the_cap_is_served_and_one_byte_more_is_431(
    server: PolyhostProcess,
) -> None:
    name = b"X-Big"
    at_cap = name + b": " + b"v" * (HEADER_CAP - len(name)) + b"\r\n"
    assert exchange(server, get(b"/ping", at_cap))[0] == 200
    over = name + b": " + b"v" * (HEADER_CAP - len(name) + 1) + b"\r\n"
    status, _, body = exchange(server, get(b"/ping", over))
    assert (status, error_code(body)) == (431, "RequestHeaderFieldsTooLarge")
    assert b"X-Big" in body and b"16384" in body


def test_a_hundred_headers_are_served_and_one_more_is_431(server: PolyhostProcess) -> None:
    def headers(count: int) -> bytes:  # Host is the first
        return b"".join(b"X-%d: v\r\n" % i for i in range(count - 1))

    assert exchange(server, get(b"/ping", headers(COUNT_CAP)))[0] == 200
    status, _, body = exchange(server, get(b"/ping", headers(COUNT_CAP + 1)))
    assert (status, error_code(body)) == (431, "RequestHeaderFieldsTooLarge")
    assert b"more than 100 headers" in body


def test_the_whole_head_is_capped_although_each_header_is_small(
    server: PolyhostProcess,
) -> None:
    piece = b"v" * (15 * KiB)
    under = b"".join(b"X-%d: %s\r\n" % (i, piece) for i in range(3))  # ~45 KiB
    assert exchange(server, get(b"/ping", under))[0] == 200
    over = b"".join(b"X-%d: %s\r\n" % (i, piece) for i in range(5))  # ~75 KiB
    status, _, body = exchange(server, get(b"/ping", over))
    assert (status, error_code(body)) == (431, "RequestHeaderFieldsTooLarge")
    assert b"65536 bytes" in body


def test_pipelined_requests_larger_than_the_head_cap_in_all_are_served(
    server: PolyhostProcess,
) -> None:
    """The head cap counts one head: many requests (and bodies) in one read are not a big head."""
    small = [get(b"/ping", b"X-Pad: " + b"p" * 900 + b"\r\n") for _ in range(150)]  # ~140 KiB
    bodies = [
        b"GET /ping HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (200 * KiB)
        + b"b" * (200 * KiB)
        for _ in range(3)
    ]
    requests = small + bodies
    with connect(server.port) as sock:
        sock.sendall(b"".join(requests))
        data = b""
        deadline = time.monotonic() + 30
        while data.count(b"HTTP/1.1 200 OK") < len(requests):
            assert time.monotonic() < deadline, data[-500:]
            chunk = sock.recv(65536)
            assert chunk, data[-500:]
            data += chunk
    assert b"HTTP/1.1 4" not in data


# -- bodies ---------------------------------------------------------------------------------------


def test_a_body_far_past_its_cap_is_answered_without_draining_it(
    server: PolyhostProcess,
) -> None:
    """A 100 MiB body to a route capped at 1 MiB: answered once 4 MiB were dropped, then
    closed, instead of reading all 100 MiB to keep the connection."""

    def pieces() -> Iterator[bytes]:
        yield b"GET /ping HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (100 * MiB)
        for _ in range(100 * MiB // (64 * KiB)):
            yield b"z" * (64 * KiB)

    with connect(server.port) as sock:
        sent, answered = push(sock, pieces())
        raw, _ = read_one(sock)
        rest, closed = read_to_close(sock, 10)
    assert answered
    assert sent < 50 * MiB
    status, headers, _ = parse(raw)
    assert status == 200 and headers.get("connection") == "close"
    assert closed and rest == b""


# -- deadlines ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick(start_server: ServerFactory) -> PolyhostProcess:
    """A server with one-second head and body deadlines and a 20-connection cap."""
    return start_server(
        *("--header-timeout", "1", "--body-timeout", "1"),
        *("--keep-alive-timeout", "30", "--max-connections", "20"),
        name="quick",
        images=False,
    )


def test_a_silent_new_connection_gets_408_at_the_header_timeout(quick: PolyhostProcess) -> None:
    with connect(quick.port) as sock:
        raw, closed = read_to_close(sock, 20)
    status, headers, body = parse(raw)
    assert (status, error_code(body), closed) == (408, "RequestTimeout", True)
    assert headers.get("connection") == "close"


def test_a_partial_head_gets_408_at_the_header_timeout(quick: PolyhostProcess) -> None:
    with connect(quick.port) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n")
        raw, closed = read_to_close(sock, 20)
    status, _, body = parse(raw)
    assert (status, error_code(body), closed) == (408, "RequestTimeout", True)
    assert b"did not arrive within 1 s" in body


def test_a_partial_body_gets_408_at_the_body_timeout(quick: PolyhostProcess) -> None:
    with connect(quick.port) as sock:
        sock.sendall(b"POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        raw, closed = read_to_close(sock, 20)
    status, _, body = parse(raw)
    assert (status, error_code(body), closed) == (408, "RequestTimeout", True)
    assert b"--body-timeout" in body


def test_an_idle_keep_alive_connection_is_not_given_a_408(quick: PolyhostProcess) -> None:
    """Between requests the keep-alive timeout (30 s here) applies, not the header timeout:
    a client may pause between requests longer than it may take to send one head."""
    with connect(quick.port) as sock:
        sock.sendall(get(b"/ping"))
        assert parse(read_one(sock)[0])[0] == 200
        raw, closed = read_to_close(sock, 3)  # several header timeouts
        assert (raw, closed) == (b"", False)
        sock.sendall(get(b"/ping"))
        assert parse(read_one(sock)[0])[0] == 200


def test_past_the_connection_cap_new_connections_get_503_and_a_log_line(
    quick: PolyhostProcess,
) -> None:
    with connection_flood(quick.port, 30) as sockets:
        answers = answers_on(sockets[20:], deadline_s=5)
    assert all(a is not None and a.status == 503 and a.closed for a in answers), answers
    assert answers[0] is not None and error_code(answers[0].body) == "ServiceUnavailable"
    assert "refused" in quick.log()
    assert ping(quick.port) == 200


# -- the open-file limit --------------------------------------------------------------------------


def _serve_with_nofile(
    state_dir: Path, soft: int, hard: int
) -> tuple[subprocess.Popen[bytes], int]:
    """`polyhost serve` started under RLIMIT_NOFILE (soft, hard); returns it and its port."""
    port = free_port()
    state_dir.mkdir(parents=True)
    log = open(state_dir / "server.log", "wb")  # noqa: SIM115 - the child writes to it
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "polyhost", "serve", "--port", str(port)),
            *("--state-dir", str(state_dir), "--header-timeout", "2"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
    )
    log.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, (state_dir / "server.log").read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as answer:
                if answer.status == 200:
                    return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("polyhost did not come up")


def test_the_soft_open_file_limit_is_raised_to_the_hard_limit(tmp_path: Path) -> None:
    process, _ = _serve_with_nofile(tmp_path / "state", 256, 2048)
    try:
        assert psutil.Process(process.pid).rlimit(psutil.RLIMIT_NOFILE) == (2048, 2048)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_connection_cap_keeps_a_reserve_below_the_open_file_limit(tmp_path: Path) -> None:
    """Under a 256-descriptor limit the 4096-connection default is lowered to 192 (a reserve of
    64), said in the log; a flood of 300 connections never takes the server's last
    descriptors: it keeps answering, and its descriptors stay below the limit."""
    process, port = _serve_with_nofile(tmp_path / "state", 256, 256)
    try:
        log = (tmp_path / "state" / "server.log").read_text()
        assert "holding at most 192 client connections, not 4096" in log
        with connection_flood(port, 300) as sockets:
            answers = answers_on(sockets[200:], deadline_s=5)
            assert psutil.Process(process.pid).num_fds() < 256
            assert all(a is not None and a.status == 503 for a in answers), answers
        assert ping(port) == 200
        assert "Traceback" not in (tmp_path / "state" / "server.log").read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)
