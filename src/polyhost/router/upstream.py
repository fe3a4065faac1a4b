"""A pooled keep-alive HTTP/1.1 client for one container, built for the hot path.

Why not aiohttp/httpx: a request through them costs a few hundred microseconds of Python,
which alone would exceed the router's overhead budget. This client writes the request in one
`transport.write`, parses the answer with httptools (llhttp, the parser uvicorn uses) and keeps
connections for reuse. Each container gets its own pool with a hard bound on requests in flight:
a slow or hung container fills only its own pool and is refused at once past the bound, so it
never delays its neighbours and never queues without limit.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import httptools


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


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    headers: dict[bytes, bytes]  # lowercased names
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[UpstreamResponse] | None = None
        self._headers: dict[bytes, bytes] = {}
        self._chunks: list[bytes] = []
        self._size = 0
        self._limit = 0
        self.received_any = False
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(UpstreamConnectionError(f"malformed HTTP response: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(UpstreamConnectionError("connection closed by the container"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._limit:
            self._fail(UpstreamResponseTooLarge(f"response larger than {self._limit} bytes"))
            self.close()
            return
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
        waiter.set_result(response)

    # used by the pool
    def send(self, data: bytes, limit: int) -> asyncio.Future[UpstreamResponse]:
        assert self._transport is not None
        self._headers = {}
        self._chunks = []
        self._size = 0
        self._limit = limit
        self.received_any = False
        self._waiter = self._loop.create_future()
        self._transport.write(data)
        return self._waiter

    def on_timeout(self) -> None:
        self._fail(UpstreamTimeout("timed out"))
        self.close()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _fail(self, error: UpstreamError) -> None:
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
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
    """Connections to one container (`host:port`) with a bound on requests in flight."""

    def __init__(self, host: str, port: int, max_inflight: int) -> None:
        self.host = host
        self.port = port
        self.max_inflight = max_inflight
        self.inflight = 0
        self._idle: list[_Connection] = []
        self._host_header = f"{host}:{port}".encode()

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
        data = b"".join(parts)
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
                _, protocol = await loop.create_connection(
                    lambda: _Connection(loop), self.host, self.port
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
