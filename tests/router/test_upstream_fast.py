"""`UpstreamPool.start`, the invocation path's fast lane, against a scripted container.

Each case primes the pool with one `post` (so a kept-alive connection is idle), then sends on
the fast lane with a future as the `Reply`: the answer and every failure must be those `post`
gives, and the pool's bookkeeping (in flight, idle, deadlines) must be settled by then.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from polyhost.router.upstream import (
    HeadLimits,
    UpstreamConnectionError,
    UpstreamHeadTooLarge,
    UpstreamPool,
    UpstreamResponse,
    UpstreamSaturated,
    UpstreamTimeout,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: 2\r\n\r\nok"
# What the scripted container does with the n-th request it reads (n counts from 0 per server).
Script = Callable[[int, bytes, asyncio.StreamWriter], Awaitable[bool]]  # False: close


async def _serve(script: Script) -> tuple[asyncio.Server, int]:
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                request = head + await reader.readexactly(length)
                number, count = count, count + 1
                if not await script(number, request, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _fast(
    pool: UpstreamPool,
    headers: list[tuple[bytes, bytes]] | None = None,
    timeout: float = 5.0,
    limit: int = 1 << 20,
) -> UpstreamResponse:
    reply: asyncio.Future[UpstreamResponse] = asyncio.get_running_loop().create_future()
    assert pool.start(b"/invocations", headers or [], b"x", timeout, limit, reply)
    assert pool.inflight == 1
    return await reply


async def _primed(script: Script, **kwargs: object) -> tuple[asyncio.Server, UpstreamPool]:
    server, port = await _serve(script)
    pool = UpstreamPool("127.0.0.1", port, **kwargs)  # type: ignore[arg-type]
    assert (await pool.post(b"/invocations", [], b"x", 5, 1 << 20)).status == 200
    assert len(pool._idle) == 1
    return server, pool


def _run(case: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(case())  # type: ignore[arg-type]


def test_start_declines_without_an_idle_connection() -> None:
    async def case() -> None:
        pool = UpstreamPool("127.0.0.1", 9, max_inflight=2)
        reply: asyncio.Future[UpstreamResponse] = asyncio.get_running_loop().create_future()
        assert not pool.start(b"/invocations", [], b"x", 5, 1 << 20, reply)
        assert pool.inflight == 0 and not reply.done()

    _run(case)


def test_start_reuses_the_connection_and_passes_the_headers_back() -> None:
    seen: list[bytes] = []

    async def script(number: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        seen.append(request)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nX-Amzn-SageMaker-Custom-Attributes: "
            b"a=%d\r\nContent-Length: 2\r\n\r\nok" % number
        )
        return True

    async def case() -> None:
        server, pool = await _primed(script, max_inflight=2)
        connection = pool._idle[0]
        for number in (1, 2, 3):
            response = await _fast(pool, [(b"Content-Type", b"text/csv")])
            assert (response.status, response.body) == (200, b"ok")
            assert response.headers[b"content-type"] == b"text/csv"
            assert response.headers[b"x-amzn-sagemaker-custom-attributes"] == b"a=%d" % number
            assert pool._idle == [connection] and pool.inflight == 0 and not pool._deadlines
        assert b"Content-Type: text/csv\r\n" in seen[-1]
        pool.close()
        server.close()

    _run(case)


def test_start_reads_a_chunked_answer() -> None:
    async def script(number: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        if number == 0:
            writer.write(OK)
        else:
            writer.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
            )
        return True

    async def case() -> None:
        server, pool = await _primed(script, max_inflight=2)
        assert (await _fast(pool)).body == b"abcdefg"
        assert len(pool._idle) == 1
        server.close()

    _run(case)


def test_start_closed_mid_answer_is_a_connection_error_not_retried() -> None:
    requests = 0

    async def script(number: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal requests
        requests += 1
        if number == 0:
            writer.write(OK)
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        return False

    async def case() -> None:
        server, pool = await _primed(script, max_inflight=2)
        with pytest.raises(UpstreamConnectionError, match="closed by the container"):
            await _fast(pool)
        assert requests == 2  # bytes of an answer came: the request is not sent again
        assert pool.inflight == 0 and not pool._idle and not pool._deadlines
        server.close()

    _run(case)


def test_start_retries_once_when_the_kept_alive_connection_was_closed() -> None:
    async def script(number: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        return True

    async def case() -> None:
        server, pool = await _primed(script, max_inflight=2)
        stale = pool._idle[0]
        reply: asyncio.Future[UpstreamResponse] = asyncio.get_running_loop().create_future()
        assert pool.start(b"/invocations", [], b"x", 5, 1 << 20, reply)
        stale.connection_lost(None)  # closed by the container before any answer byte came
        response = await reply
        assert (response.status, response.body) == (200, b"ok")
        assert pool.inflight == 0 and pool._idle and pool._idle[0] is not stale
        server.close()

    _run(case)


def test_start_keeps_the_head_caps() -> None:
    async def script(number: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        if number == 0:
            writer.write(OK)
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"v" * 5000 + b"\r\n\r\n")
        return True

    async def case() -> None:
        limits = HeadLimits(total=64 * 1024, line=1024, count=10)
        server, pool = await _primed(script, max_inflight=2, head_limits=limits)
        with pytest.raises(UpstreamHeadTooLarge, match="--max-header-bytes"):
            await _fast(pool)
        assert pool.inflight == 0 and not pool._idle
        server.close()

    _run(case)


def test_start_times_out_with_one_timer_per_pool() -> None:
    async def script(number: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        if number == 0:
            writer.write(OK)
            return True
        await asyncio.sleep(5)  # never answers in time
        return False

    async def case() -> None:
        server, pool = await _primed(script, max_inflight=2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(UpstreamTimeout):
            await _fast(pool, timeout=0.2)
        assert 0.15 <= loop.time() - started < 1.0
        assert pool.inflight == 0 and not pool._deadlines and not pool._idle
        server.close()

    _run(case)


def test_start_refuses_past_the_bound_on_requests_in_flight() -> None:
    async def script(number: int, request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        return True

    async def case() -> None:
        server, pool = await _primed(script, max_inflight=1)
        pool.inflight = 1  # another call is in flight
        reply: asyncio.Future[UpstreamResponse] = asyncio.get_running_loop().create_future()
        with pytest.raises(UpstreamSaturated):
            pool.start(b"/invocations", [], b"x", 5, 1 << 20, reply)
        assert len(pool._idle) == 1  # the idle connection stays idle
        server.close()

    _run(case)
