"""The upstream client against a container that attacks through its answer's head.

The container (tests/support/containers/hostile.py) runs as a real process on loopback. Each
attack must end at the cap, as the attack's bytes arrive: the call fails at once (not at its
timeout), the client reads about one cap of the attack (the container reports how much it
managed to send, which is what the client's socket took), and the event loop keeps its pace
meanwhile, since the neighbour's health checks run on that same loop.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from polyhost.router.upstream import HeadLimits, UpstreamError, UpstreamPool
from tests.support.server import CONTAINERS, free_port

TIMEOUT_S = 5.0
LIMIT = 1 << 20
LIMITS = HeadLimits(total=64 * 1024, line=16 * 1024, count=100)
# What the container may have sent before the client stops reading: the cap, plus the socket
# buffers on both sides of loopback (several MiB on Linux) -- far below the attack's 256 MiB.
SENT_BOUND = 32 << 20


class Hostile:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port

    def sent(self) -> int:
        """Bytes the container managed to send in its (one) attack, from its own report."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        assert "sent" in line, line
        return int(line.split("sent ")[1].split(" ")[0])


@pytest.fixture
def hostile() -> Iterator[Callable[..., Hostile]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(mode: str, **environment: str) -> Hostile:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, str(CONTAINERS / "hostile.py")],
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "SAGEMAKER_BIND_TO_PORT": str(port),
                "HOSTILE": mode,
                **environment,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return Hostile(process, port)
            time.sleep(0.02)
        raise RuntimeError("the hostile container did not listen")

    yield start
    for process in started:
        process.kill()
        process.wait()


async def attacked(port: int) -> tuple[BaseException | None, float, float]:
    """One call to the container: what it raised, how long it took, and the event loop's
    longest stall meanwhile (a 10 ms ticker's worst gap)."""
    pool = UpstreamPool("127.0.0.1", port, max_inflight=4, head_limits=LIMITS)
    worst = 0.0
    running = True

    async def ticker() -> None:
        nonlocal worst
        last = time.monotonic()
        while running:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            worst = max(worst, now - last)
            last = now

    tick = asyncio.create_task(ticker())
    started = time.monotonic()
    error: BaseException | None = None
    try:
        await pool.post(b"/invocations", [], b"x", TIMEOUT_S, LIMIT)
    except UpstreamError as raised:
        error = raised
    took = time.monotonic() - started
    running = False
    await tick
    pool.close()
    return error, took, worst


def check_refused(hostile: Hostile, expected: str) -> None:
    error, took, worst = asyncio.run(attacked(hostile.port))
    assert type(error).__name__ == "UpstreamHeadTooLarge", repr(error)
    assert expected in str(error)
    assert took < TIMEOUT_S / 2, f"the call took {took:.2f} s: it was not refused at the cap"
    assert worst < 0.5, f"the event loop stalled {worst:.2f} s while the head was read"
    assert hostile.sent() < SENT_BOUND


def test_a_huge_header_line_is_refused_at_the_cap(hostile: Callable[..., Hostile]) -> None:
    check_refused(hostile("huge-header-line"), "64 KiB")


def test_two_million_headers_are_refused_at_the_count(hostile: Callable[..., Hostile]) -> None:
    check_refused(hostile("many-headers"), "more than 100 headers")


def test_a_header_line_past_its_cap_is_refused(hostile: Callable[..., Hostile]) -> None:
    # "X-Big: " then the value: name and value together one byte past 16 KiB.
    check_refused(hostile("huge-header-line", HOSTILE_BYTES=str(16 * 1024 - 4)), "16 KiB")


def test_a_huge_trailer_is_refused(hostile: Callable[..., Hostile]) -> None:
    check_refused(hostile("huge-trailer"), "trailer")


def test_heads_within_the_caps_are_answered(hostile: Callable[..., Hostile]) -> None:
    async def scenario(line: Hostile, many: Hostile) -> None:
        pool = UpstreamPool("127.0.0.1", line.port, max_inflight=4, head_limits=LIMITS)
        response = await pool.post(b"/invocations", [], b"x", TIMEOUT_S, LIMIT)
        assert response.status == 200
        assert len(response.headers[b"x-big"]) == 16 * 1024 - 5  # "X-Big" + value: the cap
        pool = UpstreamPool("127.0.0.1", many.port, max_inflight=4, head_limits=LIMITS)
        response = await pool.post(b"/invocations", [], b"x", TIMEOUT_S, LIMIT)
        assert response.status == 200

    # 99 "X-N" headers and the Content-Length: 100, the most allowed.
    asyncio.run(
        scenario(
            hostile("huge-header-line", HOSTILE_BYTES=str(16 * 1024 - 5)),
            hostile("many-headers", HOSTILE_COUNT="99"),
        )
    )


def test_a_refused_head_leaves_the_pool_usable(hostile: Callable[..., Hostile]) -> None:
    """The refused connection is closed, never reused: the next call gets a fresh one."""

    async def scenario(port: int) -> None:
        pool = UpstreamPool("127.0.0.1", port, max_inflight=4, head_limits=LIMITS)
        for _ in range(2):
            with pytest.raises(UpstreamError):
                await pool.post(b"/invocations", [], b"x", TIMEOUT_S, LIMIT)
            assert pool._idle == [] and pool.inflight == 0

    asyncio.run(scenario(hostile("many-headers").port))
