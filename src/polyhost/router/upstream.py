"""A pooled keep-alive HTTP/1.1 client for one container, built for the hot path.

Why not aiohttp/httpx: a request through them costs a few hundred microseconds of Python,
which alone would exceed the router's overhead budget. This client writes the request in one
`transport.write`, parses the answer with httptools (llhttp, the parser uvicorn uses) and keeps
connections for reuse. Each container gets its own pool with a hard bound on requests in flight:
a slow or hung container fills only its own pool and is refused at once past the bound, so it
never delays its neighbours and never queues without limit.

A container's answer is bounded as the bytes arrive, as a client's request head is bounded by
the listener (the same settings: `--max-headers-total-bytes`, `--max-header-bytes`,
`--max-header-count`): the head, each header line and the header count, and in a chunked body
whatever the parser must hold without delivering any of it (a trailer, a chunk-size line). The
parser only ever sees as many bytes as the cap still allows, so a head past its cap is refused
after one cap's worth of bytes, not buffered until the invocation timeout: that matters for the
memory and for the event loop, which the neighbours' calls and health checks share (httptools
joins a header's pieces as they come, so a header line of hundreds of MiB costs seconds of CPU
on the loop). The refused connection is closed, so the container's remaining bytes are never
read.

Two ways to call it. `post` is a coroutine, for every case. `start` is the invocation path's
fast lane: when an idle kept-alive connection is at hand it writes the request at once and
returns, and the connection's parser callback hands the answer (or the failure) to the caller's
`Reply` directly, with no task, future or timer of its own per request. On a 2-core machine
shared with the container, that machinery was a fifth of the server's time per request. The
invocation timeout of those calls is kept by one timer per pool, armed for the oldest deadline
in flight, instead of one timer per request; a kept-alive connection the container closed
meanwhile is retried once on a fresh connection, as `post` does.
"""

from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import httptools

from polyhost.settings import KiB, Settings


class UpstreamError(Exception):
    """Base of the failures the router translates into SageMaker errors."""


class UpstreamTimeout(UpstreamError):
    pass


class UpstreamConnectionError(UpstreamError):
    pass


class UpstreamConnectFailed(UpstreamConnectionError):
    """No connection could be made: the container is not listening (down or restarting)."""


class UpstreamNodeLost(UpstreamConnectionError):
    """The container's machine was lost while the call was in flight. The request may have
    reached the container, so the router does not send it elsewhere: the caller gets a 503
    naming the machine (the message), and decides whether to retry."""


class UpstreamSaturated(UpstreamError):
    """The container already has its maximum number of requests in flight."""


class UpstreamResponseTooLarge(UpstreamError):
    pass


class UpstreamHeadTooLarge(UpstreamError):
    """The answer's head (or a chunked body's trailer) broke a cap: the message says which."""


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """The caps on a container's answer head: bytes in all, bytes of one header (name and
    value), and headers. A chunked body may hold at most `total` bytes of framing and trailer
    the parser delivers nothing of."""

    total: int
    line: int
    count: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HeadLimits:
        """The request head's caps, which bound a container's answer head too."""
        return cls(
            settings.max_headers_total_bytes, settings.max_header_bytes, settings.max_header_count
        )


# Settings' defaults: 64 KiB in all, 16 KiB one header, 100 headers (nginx refuses an upstream
# head past 4-8 KiB with a 502 "upstream sent too big header").
DEFAULT_HEAD_LIMITS = HeadLimits.from_settings(Settings())


def _size(count: int) -> str:
    return f"{count // KiB} KiB" if count % KiB == 0 else f"{count} bytes"


class _StopParsing(Exception):
    """Raised from a parser callback once the answer is refused (its waiter already failed)."""


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    headers: dict[bytes, bytes]  # lowercased names
    body: bytes


class Reply(Protocol):
    """Where an answer started by `UpstreamPool.start` goes: the same three methods the
    connection uses on the future of a `post`, so both kinds of call share one parser path.
    Exactly one of the `set_` methods is called, once; `done` is False until then."""

    def done(self) -> bool: ...

    def set_result(self, response: UpstreamResponse, /) -> None: ...

    def set_exception(self, error: BaseException, /) -> None: ...


class StreamSink(Reply, Protocol):
    """A `Reply` that takes a 2xx answer's body as it arrives (`router/streaming.py`): `head`
    says whether to stream the body (True: every piece goes to `data`, nothing is kept, and
    `set_result` gets an empty body at the end) or to collect it as `post` does (an error
    answer, whose text the caller's error quotes)."""

    def head(self, status: int, headers: dict[bytes, bytes], /) -> bool: ...

    def data(self, chunk: bytes, /) -> None: ...


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request at a time."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, limits: HeadLimits, pool: UpstreamPool | None = None
    ) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: Reply | None = None
        # Set while a call of `UpstreamPool.start` is in flight: the pool's bookkeeping (in
        # flight, deadline, idle list) is then settled here, before the reply is given.
        self._pool = pool
        self._fast = False
        self._request = b""
        self._head_limits = limits
        self._headers: dict[bytes, bytes] = {}
        self._header_count = 0
        self._chunks: list[bytes] = []
        self._size = 0
        self._limit = 0
        # Bytes the parser may still be fed before it must have delivered something: the head
        # must be complete within `limits.total`; after it, every delivery (body bytes, a chunk
        # header) grants `limits.total` more, so only framing and trailers are counted.
        self._budget = limits.total
        self._in_head = True
        self.received_any = False
        self.closed = False
        # A streamed answer (`send_stream`): its body goes to the sink as it is parsed.
        self._sink: StreamSink | None = None
        self._streaming = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: never read, never reused
            self.close()
            return
        self.received_any = True
        if len(data) <= self._budget:  # every ordinary answer: one feed
            self._budget -= len(data)
            self._feed(data)
        else:
            self._feed_bounded(data)

    def _feed(self, data: bytes | memoryview) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            if self._waiter is not None:  # not refused on purpose: the bytes are not HTTP
                self._fail(UpstreamConnectionError(f"malformed HTTP response: {error}"))
            self.close()

    def _feed_bounded(self, data: bytes) -> None:
        """Feed `data`, more than the budget allows, one budget at a time: a slice that leaves
        the parser holding everything it was given (no delivery renewed the budget) is where
        the answer breaks its cap, and nothing past it is parsed."""
        view = memoryview(data)
        while view and not self.closed:
            room = self._budget
            if len(view) <= room:
                self._budget -= len(view)
                self._feed(view)
                return
            self._budget = 0
            self._feed(view[:room])
            if self.closed:
                return
            if self._budget == 0:
                total = _size(self._head_limits.total)
                if self._in_head:
                    reason = f"its head is larger than {total} (--max-headers-total-bytes)"
                else:
                    reason = (
                        f"its chunked body holds more than {total} of chunk framing or trailer "
                        "without data (--max-headers-total-bytes)"
                    )
                self._refuse(reason)
                return
            view = view[room:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(UpstreamConnectionError("connection closed by the container"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self._waiter is None:  # a second answer to one request
            self.close()
            raise _StopParsing()

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self._head_limits
        self._header_count += 1
        if len(name) + len(value) > limits.line:
            shown = name[:64].decode("ascii", "replace")
            where = "header" if self._in_head else "trailer"
            self._refuse(
                f"{where} {shown} is {len(name) + len(value)} bytes, more than the "
                f"{_size(limits.line)} one header may hold (--max-header-bytes)"
            )
            raise _StopParsing()
        if self._header_count > limits.count:
            where = "headers" if self._in_head else "headers and trailers"
            self._refuse(f"it has more than {limits.count} {where} (--max-header-count)")
            raise _StopParsing()
        if self._in_head:  # trailers are bounded, never used
            self._headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._budget = self._head_limits.total
        sink = self._sink
        if sink is not None:
            self._streaming = sink.head(self._parser.get_status_code(), self._headers)

    def on_chunk_header(self) -> None:
        self._budget = self._head_limits.total

    def on_body(self, body: bytes) -> None:
        self._budget = self._head_limits.total
        if self._streaming:
            assert self._sink is not None
            self._sink.data(body)
            if self.closed:  # the sink ended the stream (a bound): parse nothing more
                raise _StopParsing()
            return
        self._size += len(body)
        if self._size > self._limit:
            self._fail(UpstreamResponseTooLarge(f"response larger than {self._limit} bytes"))
            self.close()
            raise _StopParsing()
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        chunks = self._chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        response = UpstreamResponse(self._parser.get_status_code(), self._headers, body)
        if not self._parser.should_keep_alive():
            self.close()
        self._waiter = None
        if self._fast:
            self._fast = False
            assert self._pool is not None
            self._pool._finished(self)
        waiter.set_result(response)

    # used by the pool
    def send(self, data: bytes, limit: int) -> asyncio.Future[UpstreamResponse]:
        waiter: asyncio.Future[UpstreamResponse] = self._loop.create_future()
        self._begin(data, limit, waiter)
        return waiter

    def send_fast(self, data: bytes, limit: int, reply: Reply) -> None:
        """Send `data`; `reply` gets the answer, after the pool's bookkeeping is settled."""
        self._fast = True
        self._request = data
        self._begin(data, limit, reply)

    def send_stream(self, data: bytes, limit: int, sink: StreamSink) -> None:
        """Send `data`; a 2xx answer's body goes to `sink` as it arrives (see StreamSink),
        any other is collected up to `limit` bytes."""
        self._begin(data, limit, sink, sink)

    def pause_reading(self) -> None:
        """Stop reading the answer (a streamed one whose client reads slower than it comes)."""
        if self._transport is not None and not self.closed:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.resume_reading()

    def _begin(
        self, data: bytes, limit: int, waiter: Reply, sink: StreamSink | None = None
    ) -> None:
        assert self._transport is not None
        self._sink = sink
        self._streaming = False
        self._headers = {}
        self._header_count = 0
        self._chunks = []
        self._size = 0
        self._limit = limit
        self._budget = self._head_limits.total
        self._in_head = True
        self.received_any = False
        self._waiter = waiter
        self._transport.write(data)

    def on_timeout(self) -> None:
        self._fail(UpstreamTimeout("timed out"))
        self.close()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _refuse(self, reason: str) -> None:
        self._fail(UpstreamHeadTooLarge(reason))
        self.close()

    def _fail(self, error: UpstreamError) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is None or waiter.done():
            return
        if self._fast:
            self._fast = False
            assert self._pool is not None
            self._pool._failed(self, waiter, error)
        else:
            waiter.set_exception(error)


class ContainerPool(Protocol):
    """What the router needs of a container's connections: the routing table holds this, so
    the Ray backend's remote containers (or a test's scripted pool) plug in the same way."""

    max_inflight: int

    async def post(
        self,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout: float,
        max_response_bytes: int,
    ) -> UpstreamResponse:
        """POST `body`; raises an `UpstreamError` subclass on every failure."""
        ...

    def close(self) -> None: ...


class UpstreamPool:
    """Connections to one container (`host:port`) with a bound on requests in flight, each
    answer's head bounded by `head_limits`."""

    def __init__(
        self,
        host: str,
        port: int,
        max_inflight: int,
        head_limits: HeadLimits = DEFAULT_HEAD_LIMITS,
        connect: Callable[[str, int], Awaitable[socket.socket]] | None = None,
    ) -> None:
        """`connect` opens a connected socket to (host, port) where the loop's own connect
        cannot reach: inside an isolated instance's network namespace."""
        self.host = host
        self.port = port
        self.max_inflight = max_inflight
        self.head_limits = head_limits
        self._connect = connect
        self.inflight = 0
        self._idle: list[_Connection] = []
        self._host_header = f"{host}:{port}".encode()
        # Deadlines of the calls `start` has in flight, and the one timer that keeps them: armed
        # for the earliest, re-armed when it fires (about once per timeout under steady load).
        self._deadlines: dict[_Connection, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    async def connection(self, deadline: float) -> tuple[_Connection, bool]:
        """An idle kept-alive connection, else a new one (True: it was kept alive), for a
        streamed call (`router/streaming.py`), which counts itself in `inflight` and gives
        the connection back with `release`; raises UpstreamTimeout or UpstreamConnectFailed."""
        return await self._acquire(asyncio.get_running_loop(), deadline)

    def release(self, connection: _Connection) -> None:
        """Keep a connection whose streamed answer ended, if it lives, for the next call."""
        if not connection.closed:
            self._idle.append(connection)

    def encode(self, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        """The request's bytes, as `post` and `start` send them."""
        return self._encode(path, headers, body)

    def _encode(self, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
        parts = [
            b"POST ",
            path,
            b" HTTP/1.1\r\nHost: ",
            self._host_header,
            b"\r\nContent-Length: ",
            str(len(body)).encode(),
            b"\r\n",
        ]
        for name, value in headers:
            parts += [name, b": ", value, b"\r\n"]
        parts += [b"\r\n", body]
        return b"".join(parts)

    def start(
        self,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout: float,
        max_response_bytes: int,
        reply: Reply,
    ) -> bool:
        """Send the POST now on an idle kept-alive connection, `reply` to get its answer; False
        (and nothing sent) when no idle connection is at hand: then use `post`. Raises
        `UpstreamSaturated` past the bound on requests in flight, as `post` does."""
        if self.inflight >= self.max_inflight:
            raise UpstreamSaturated(f"{self.inflight} requests already in flight")
        idle = self._idle
        while idle:
            connection = idle.pop()
            if not connection.closed:
                break
        else:
            return False
        self.inflight += 1
        deadline = connection._loop.time() + timeout
        self._deadlines[connection] = deadline
        if deadline < self._timer_at:
            self._arm(connection._loop, deadline)
        connection.send_fast(self._encode(path, headers, body), max_response_bytes, reply)
        return True

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(at, self._expire, loop)
        self._timer_at = at

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Time out every `start` call past its deadline; re-arm for the earliest left."""
        self._timer = None
        self._timer_at = math.inf
        now = loop.time()
        earliest = math.inf
        for connection, deadline in list(self._deadlines.items()):
            if deadline <= now:
                connection.on_timeout()
            elif deadline < earliest:
                earliest = deadline
        if earliest < math.inf:
            self._arm(loop, earliest)

    def _finished(self, connection: _Connection) -> None:
        """A `start` call answered: settle the bookkeeping, keep the connection if it lives."""
        self.inflight -= 1
        self._deadlines.pop(connection, None)
        if not connection.closed:
            self._idle.append(connection)

    def _failed(self, connection: _Connection, reply: Reply, error: UpstreamError) -> None:
        """A `start` call failed. A kept-alive connection the container had closed before any
        answer byte came is retried once on a fresh connection (as `post` does), in a task:
        a rare path, which may have to connect."""
        self.inflight -= 1
        deadline = self._deadlines.pop(connection, None)
        loop = connection._loop
        if (
            isinstance(error, UpstreamConnectionError)
            and not connection.received_any
            and deadline is not None
            and loop.time() < deadline
        ):
            loop.create_task(
                self._retry(connection._request, deadline - loop.time(), connection._limit, reply)
            )
            return
        reply.set_exception(error)

    async def _retry(self, data: bytes, timeout: float, limit: int, reply: Reply) -> None:
        self.inflight += 1
        try:
            response = await self._exchange(data, timeout, limit)
        except UpstreamError as error:
            reply.set_exception(error)
            return
        finally:
            self.inflight -= 1
        reply.set_result(response)

    async def post(
        self,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout: float,
        max_response_bytes: int,
    ) -> UpstreamResponse:
        """POST `body`; raises an `UpstreamError` subclass on every failure."""
        if self.inflight >= self.max_inflight:
            raise UpstreamSaturated(f"{self.inflight} requests already in flight")
        data = self._encode(path, headers, body)
        self.inflight += 1
        try:
            return await self._exchange(data, timeout, max_response_bytes)
        finally:
            self.inflight -= 1

    async def _exchange(self, data: bytes, timeout: float, limit: int) -> UpstreamResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            connection, reused = await self._acquire(loop, deadline)
            waiter = connection.send(data, limit)
            handle = loop.call_at(deadline, connection.on_timeout)
            try:
                response = await waiter
            except UpstreamConnectionError:
                # A kept-alive connection the container closed meanwhile: retry once, fresh.
                if reused and not connection.received_any and loop.time() < deadline:
                    continue
                raise
            except asyncio.CancelledError:
                connection.close()
                raise
            finally:
                handle.cancel()
            if not connection.closed:
                self._idle.append(connection)
            return response

    async def _acquire(
        self, loop: asyncio.AbstractEventLoop, deadline: float
    ) -> tuple[_Connection, bool]:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection, True
        try:
            async with asyncio.timeout_at(deadline):
                if self._connect is None:
                    _, protocol = await loop.create_connection(
                        lambda: _Connection(loop, self.head_limits, self), self.host, self.port
                    )
                else:
                    sock = await self._connect(self.host, self.port)
                    _, protocol = await loop.create_connection(
                        lambda: _Connection(loop, self.head_limits, self), sock=sock
                    )
        except TimeoutError:
            raise UpstreamTimeout("timed out connecting") from None
        except OSError as error:
            raise UpstreamConnectFailed(f"cannot connect: {error.strerror or error}") from None
        return protocol, False

    def close(self) -> None:
        """Drop idle connections (e.g. after the container restarted)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
