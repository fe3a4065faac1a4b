"""The pooled upstream client against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from polyhost.router.upstream import (
    UpstreamConnectFailed,
    UpstreamPool,
    UpstreamResponseTooLarge,
    UpstreamSaturated,
    UpstreamTimeout,
)
from tests.support.server import CONTAINERS, free_port


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(CONTAINERS / "echo_server.py")],
        env={"SAGEMAKER_BIND_TO_PORT": str(port), "ECHO_NAME": "u", "PATH": "/usr/bin:/bin"},
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.02)
    yield port
    process.kill()
    process.wait()


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_post_reuses_one_keepalive_connection(echo_port: int) -> None:
    async def scenario() -> None:
        pool = UpstreamPool("127.0.0.1", echo_port, max_inflight=4)
        for i in range(5):
            response = await pool.post(
                b"/invocations", [(b"Content-Type", b"text/plain")], f"{i}".encode(), 5, 1 << 20
            )
            assert response.status == 200
            assert response.body == f"u:{i}".encode()
            assert response.headers[b"content-type"] == b"text/plain"
        assert len(pool._idle) == 1  # the same connection every time
        pool.close()

    run(scenario())


def test_timeout(echo_port: int) -> None:
    async def scenario() -> None:
        pool = UpstreamPool("127.0.0.1", echo_port, max_inflight=4)
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout):
            await pool.post(
                b"/invocations", [(b"X-Amzn-SageMaker-Custom-Attributes", b"sleep=2")], b"", 0.3,
                1 << 20,
            )  # fmt: skip
        assert time.monotonic() - started < 1.5
        assert pool.inflight == 0
        # the pool still works afterwards
        assert (await pool.post(b"/invocations", [], b"ok", 5, 1 << 20)).body == b"u:ok"

    run(scenario())


def test_bound_on_requests_in_flight(echo_port: int) -> None:
    async def scenario() -> None:
        pool = UpstreamPool("127.0.0.1", echo_port, max_inflight=2)
        slow = [(b"X-Amzn-SageMaker-Custom-Attributes", b"sleep=0.5")]
        tasks = [asyncio.create_task(pool.post(b"/invocations", slow, b"", 5, 1 << 20))]
        tasks.append(asyncio.create_task(pool.post(b"/invocations", slow, b"", 5, 1 << 20)))
        await asyncio.sleep(0.05)
        with pytest.raises(UpstreamSaturated):
            await pool.post(b"/invocations", [], b"", 5, 1 << 20)
        assert [t.status for t in await asyncio.gather(*tasks)] == [200, 200]

    run(scenario())


def test_response_too_large(echo_port: int) -> None:
    async def scenario() -> None:
        pool = UpstreamPool("127.0.0.1", echo_port, max_inflight=2)
        with pytest.raises(UpstreamResponseTooLarge):
            await pool.post(b"/invocations", [], b"x" * 100, 5, 50)

    run(scenario())


def test_nobody_listening() -> None:
    async def scenario() -> None:
        pool = UpstreamPool("127.0.0.1", free_port(), max_inflight=2)
        with pytest.raises(UpstreamConnectFailed):
            await pool.post(b"/invocations", [], b"", 5, 100)

    run(scenario())
