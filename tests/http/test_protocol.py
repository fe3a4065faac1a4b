"""polyhost's own HTTP/1.1 server, spoken to over raw sockets: the cases clients rely on."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.endpoints import deploy, echo_container
from tests.support.server import PolyhostProcess


@pytest.fixture(scope="module")
def endpoint(sagemaker: Any) -> str:
    assert deploy(sagemaker, "proto", [echo_container("p")])["EndpointStatus"] == "InService"
    return "/endpoints/proto/invocations"


def connect(server: PolyhostProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response (Content-Length framed), leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        rest += sock.recv(65536)
    assert len(rest) == length, "no bytes beyond one response expected here"
    return status, headers, rest


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def test_keep_alive_serves_many_requests_on_one_connection(
    server: PolyhostProcess, endpoint: str
) -> None:
    with connect(server) as sock:
        for i in range(20):
            sock.sendall(post(endpoint, f"{i}".encode()))
            status, headers, body = read_response(sock)
            assert (status, body) == (200, f"p:{i}".encode())
            assert headers["x-amzn-invoked-production-variant"] == "AllTraffic"


def test_pipelined_requests_are_answered_in_order(server: PolyhostProcess, endpoint: str) -> None:
    with connect(server) as sock:
        sock.sendall(b"".join(post(endpoint, f"n{i}".encode()) for i in range(12)))
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"HTTP/1.1 200") < 12 or not data.endswith(b"p:n11"):
            assert time.monotonic() < deadline, data
            data += sock.recv(65536)
        bodies = [part.rsplit(b"\r\n\r\n", 1)[-1] for part in data.split(b"HTTP/1.1 ")[1:]]
        assert bodies == [f"p:n{i}".encode() for i in range(12)]


def test_chunked_request_body(server: PolyhostProcess, endpoint: str) -> None:
    with connect(server) as sock:
        sock.sendall(
            f"POST {endpoint} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        assert read_response(sock)[2] == b"p:hello world"


def test_expect_100_continue(server: PolyhostProcess, endpoint: str) -> None:
    with connect(server) as sock:
        sock.sendall(
            f"POST {endpoint} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        interim = sock.recv(64)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"body")
        rest = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n") :]
        if rest:  # the final answer cannot come before the body was sent
            raise AssertionError(rest)
        assert read_response(sock)[2] == b"p:body"


def test_connection_close_and_http_1_0(server: PolyhostProcess, endpoint: str) -> None:
    for request in (
        post(endpoint, b"a", "Connection: close\r\n"),
        post(endpoint, b"a").replace(b"HTTP/1.1", b"HTTP/1.0", 1),
    ):
        with connect(server) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk  # the server closes the connection after its answer
            assert data.endswith(b"p:a")


def test_malformed_request_is_a_400_not_a_hang(server: PolyhostProcess) -> None:
    with connect(server) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 400 ")
        assert b"Malformed HTTP request" in data


def test_body_over_the_limit_is_refused_and_the_connection_stays_usable(
    server: PolyhostProcess, endpoint: str
) -> None:
    with connect(server) as sock:
        sock.sendall(post(endpoint, b"x" * (6 * 1024 * 1024 + 1)))
        status, headers, _ = read_response(sock)
        assert (status, headers["x-amzn-errortype"]) == (400, "ValidationError")
        sock.sendall(post(endpoint, b"after"))
        assert read_response(sock)[2] == b"p:after"


def test_control_plane_body_limit(server: PolyhostProcess) -> None:
    with connect(server) as sock:
        sock.sendall(
            post("/", b"{" + b" " * (16 * 1024 * 1024), "X-Amz-Target: SageMaker.ListModels\r\n")
        )
        status, _, body = read_response(sock)
        assert status == 400
        assert b"SerializationException" in body and b"exceeds" in body


def test_idle_keep_alive_connections_are_closed(tmp_path: Path) -> None:
    proc = PolyhostProcess(
        state_dir=tmp_path / "state", extra_args=["--keep-alive-timeout", "0.5"]
    ).start()
    try:
        with connect(proc) as sock:
            sock.settimeout(60)  # only so that a server that never closes fails instead of hanging
            sent = time.monotonic()
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock)[0] == 200
            assert sock.recv(10) == b""  # closed by the server, though the client said nothing
            # Not at once, but once idle for the timeout. Counted from before the request was
            # sent, so a slow machine can only make this longer.
            assert time.monotonic() - sent >= 0.5
    finally:
        proc.stop()
