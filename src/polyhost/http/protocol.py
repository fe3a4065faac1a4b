"""polyhost's HTTP/1.1 server: an asyncio protocol on httptools, with a direct hot path.

Why not uvicorn: measured on 2 cores, a raw httptools protocol answers about four times as many
requests per second as the same echo behind uvicorn's ASGI machinery, and a router pays that
per-request cost on every invocation. So `POST /endpoints/{name}/invocations` goes from the
parser straight to the runtime adapter and back out in one `write`; every other route
(control plane, /metrics, logs, /ping) still runs through the ASGI app, adapted here, so the
adapters stay framework-free and testable under any ASGI server.

An invocation that is the only request of its connection in progress (no pipelined requests
queued before it) takes the fast lane when the handler offers one (`RuntimeAdapter.begin`): it
is handed over from the parser's `on_message_complete` and its answer is written by a callback,
so no task is made per request; the others are served in order by the connection's worker task.

What it implements of HTTP/1.1: keep-alive (and `Connection: close`, HTTP/1.0), pipelined
requests answered in order, chunked and Content-Length request bodies, `Expect: 100-continue`,
a body cap per route that drops the excess instead of buffering it, an idle timeout, write
back-pressure, and a 400 for anything the parser rejects.

Every input a client controls is bounded, so one client can neither stall the others nor take
the server's memory or descriptors:
- bytes: the request line (414), each header, the header count and the whole head (431) are
  capped as the bytes arrive, before the parser buffers past the cap; a body past its route's
  cap is dropped, and one far past it is not even drained (the answer comes at once, then the
  connection closes);
- time: a request head must arrive within `--header-timeout` and a body within
  `--body-timeout` (408, then close), an idle keep-alive connection lives `--keep-alive-timeout`
  and a client that stops reading its answers is dropped after `--body-timeout`. All of it is
  enforced by one periodic sweep (`sweep_idle_connections`), not a timer per request, which
  measurably cost the hot path;
- count: at most `--max-connections` connections, further bounded by the open-file limit less a
  reserve for the rest of the server (`descriptors.py`); past it a new connection gets a 503 and
  is closed, and the refusals are logged, at most one line per 10 s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import unquote_to_bytes

import httptools

from polyhost.errors import ServiceError
from polyhost.http.access import log_request, loggable
from polyhost.http.descriptors import listener_capacity
from polyhost.http.errors import aws_json_error, internal_failure, rest_json_error
from polyhost.http.listener_errors import (
    HeadersTooLarge,
    MalformedRequest,
    RequestTimeout,
    TooManyConnections,
    UriTooLong,
)
from polyhost.http.types import ASGIApp, Message
from polyhost.settings import Settings

log = logging.getLogger("polyhost.http")

Headers = list[tuple[bytes, bytes]]


class BeginHandler(Protocol):
    """The invocation handler's fast lane (`RuntimeAdapter.begin`): the answer now, or None and
    `reply(status, headers, body)` called once later, never from inside the call."""

    def __call__(
        self,
        endpoint_name: str,
        headers: Headers,
        body: bytes | None,
        url: bytes,
        peer: str | None,
        reply: Callable[[int, Headers, bytes], None],
    ) -> tuple[int, Headers, bytes] | None: ...


class FastHandler(Protocol):
    """The invocation handler: endpoint name, headers, body (None: over the cap), and for
    access control the request target as received and the client's address."""

    def __call__(
        self,
        endpoint_name: str,
        headers: Headers,
        body: bytes | None,
        *,
        url: bytes = b"",
        peer: str | None = None,
    ) -> Awaitable[tuple[int, Headers, bytes]]: ...


class StreamFlow(Protocol):
    """A streamed answer's source (`router/streaming.py`'s StreamControl), told when the
    client's transport fills (`pause`), drains (`resume`) or goes away (`cancel`)."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def cancel(self) -> None: ...


class StreamHandler(Protocol):
    """InvokeEndpointWithResponseStream's handler: like `FastHandler`, and `out` to stream
    the answer into; it returns the answer to write whole (a refusal) or None once it has
    streamed one."""

    def __call__(
        self,
        endpoint_name: str,
        headers: Headers,
        body: bytes | None,
        url: bytes,
        peer: str | None,
        out: ResponseStream,
    ) -> Awaitable[tuple[int, Headers, bytes] | None]: ...


_PREFIX = b"/endpoints/"
_SUFFIX = b"/invocations"
_STREAM_SUFFIX = b"/invocations-response-stream"
_NAME_FROM, _NAME_TO = len(_PREFIX), -len(_SUFFIX)
_SHORTEST = len(_PREFIX) + len(_SUFFIX)  # an invocation's path is longer: it names an endpoint
_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_OTHER_BODY_CAP = 1024 * 1024
_HIGH_WATER = 1024 * 1024
# A body past its cap is read and dropped so the connection stays usable, but only up to this
# many times the cap: past that the answer goes out at once and the connection closes.
_DRAIN_FACTOR = 4
# At most one log line per this many seconds about refused connections.
REFUSAL_LOG_EVERY_S = 10.0


def _decoded(raw: bytes, plain: str = "latin-1") -> str:
    """A path (or an endpoint's name in one) as AWS reads it: percent-escapes decoded as UTF-8,
    so `/endpoints/ep%31/invocations` names endpoint ep1 for the policy and the router alike.
    The signature is still checked against the path as sent (`raw_path`). Without escapes the
    bytes are read as `plain` says, as before."""
    if b"%" not in raw:
        return raw.decode(plain, "replace")
    return unquote_to_bytes(raw).decode("utf-8", "replace")


class _StopParsing(Exception):
    """Raised from a parser callback to stop `feed_data` (the reason is kept on the protocol)."""


@dataclass
class ServerState:
    """Shared by every connection of one server: its limits, and what shutdown needs to find.

    `max_connections` is the cap in force: the setting, lowered when the open-file limit (less
    the reserve the rest of the server needs) cannot hold that many; 0 derives it at start.
    """

    settings: Settings
    connections: set[HttpProtocol] = field(default_factory=set)
    max_connections: int = 0
    refused: int = 0  # refusals not yet logged
    refusals_logged_at: float = float("-inf")

    def __post_init__(self) -> None:
        if self.max_connections <= 0:
            self.max_connections = listener_capacity(self.settings.max_connections)

    def refuse(self, now: float) -> None:
        """Count one refused connection; log the count now unless a line went out lately."""
        self.refused += 1
        self.log_refusals(now)

    def log_refusals(self, now: float) -> None:
        """One line per REFUSAL_LOG_EVERY_S at most, so a flood cannot flood the log too."""
        if self.refused and now - self.refusals_logged_at >= REFUSAL_LOG_EVERY_S:
            log.warning(
                "refused %d connection(s): %d open, the most this server holds "
                "(--max-connections, bounded by the open-file limit)",
                self.refused,
                len(self.connections),
            )
            self.refused = 0
            self.refusals_logged_at = now


@dataclass(slots=True)
class _Request:
    method: bytes
    url: bytes
    version: str
    headers: Headers
    body: bytes | None  # None: larger than the route's cap, dropped
    keep_alive: bool


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))


class ResponseStream:
    """A streamed answer on one connection, in HTTP/1.1 chunks (so the connection stays
    usable after it): the head with the first bytes, then one chunk per `send`.

    While it lasts the client's transport holds at most `_HIGH_WATER` bytes before its flow
    is paused (`StreamFlow.pause`, which stops reading from the container), so what a slow
    client has not read yet stays bounded.
    """

    __slots__ = ("_keep_alive", "_protocol", "started")

    def __init__(self, protocol: HttpProtocol, keep_alive: bool) -> None:
        self._protocol = protocol
        self._keep_alive = keep_alive
        self.started = False

    @property
    def closing(self) -> bool:
        """The client is gone (or going): nothing more reaches it."""
        transport = self._protocol._transport
        return transport is None or self._protocol._closing or transport.is_closing()

    def start(self, status: int, headers: Headers, flow: StreamFlow, first: bytes) -> None:
        """Write the head and `first` (the first chunk); `flow` follows the client from now."""
        self.started = True
        protocol = self._protocol
        protocol._stream_flow = flow
        transport = protocol._transport
        if self.closing or transport is None:
            flow.cancel()
            return
        transport.set_write_buffer_limits(high=_HIGH_WATER, low=_HIGH_WATER // 4)
        parts = [_status_line(status)]
        for name, value in headers:
            parts += [name, b": ", value, b"\r\n"]
        parts.append(b"transfer-encoding: chunked\r\n")
        if not self._keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        if first:
            parts += [b"%x\r\n" % len(first), first, b"\r\n"]
        transport.write(b"".join(parts))

    def send(self, data: bytes) -> None:
        """One chunk (nothing when the client is gone)."""
        transport = self._protocol._transport
        if data and transport is not None and not transport.is_closing():
            transport.writelines([b"%x\r\n" % len(data), data, b"\r\n"])

    def send_framed(self, before: bytes, data: bytes, after: bytes) -> None:
        """One chunk of `before + data + after`, written without joining them (`data` may be
        large: it goes to the socket as it is)."""
        transport = self._protocol._transport
        if transport is not None and not transport.is_closing():
            size = len(before) + len(data) + len(after)
            transport.writelines([b"%x\r\n%s" % (size, before), data, after + b"\r\n"])

    def finish(self) -> None:
        """The last chunk: the answer is complete."""
        transport = self._protocol._transport
        if transport is not None and not transport.is_closing():
            transport.write(b"0\r\n\r\n")

    def abort(self) -> None:
        """End a stream that cannot be finished: close without the last chunk, which any
        client reads as an incomplete answer, never as a complete one."""
        self._protocol._close()


class HttpProtocol(asyncio.Protocol):
    def __init__(
        self,
        invocations: FastHandler,
        app: ASGIApp,
        state: ServerState,
        streams: StreamHandler | None = None,
    ) -> None:
        self._invocations = invocations
        # InvokeEndpointWithResponseStream, and the source of the answer it is streaming.
        self._streams = streams
        self._stream_flow: StreamFlow | None = None
        # The fast lane, when `invocations` is the `answer` of an adapter that offers `begin`.
        self._begin: BeginHandler | None = getattr(
            getattr(invocations, "__self__", None), "begin", None
        )
        self._access_log = state.settings.access_log
        self._app = app
        self._state = state
        settings = state.settings
        self._invocation_cap = settings.max_body_bytes
        self._control_cap = settings.max_control_body_bytes
        self._line_cap = settings.max_request_line_bytes
        self._header_cap = settings.max_header_bytes
        self._head_cap = settings.max_headers_total_bytes
        self._count_cap = settings.max_header_count
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._client: tuple[str, int] | None = None
        self._server: tuple[str, int] | None = None
        self._queue: deque[_Request] = deque()
        self._worker: asyncio.Task[None] | None = None
        self.last_activity = self._loop.time()
        self._drained: asyncio.Future[None] | None = None
        self._drain_since = 0.0
        self._closing = False
        # Deadlines, enforced by the sweep: a head is owed from the connection's start and from
        # a message's first byte (None once it is in), a body from the end of its head.
        self._head_since: float | None = self.last_activity
        self._body_since: float | None = None
        # What the head being read may still take, and the messages read so far (to tell
        # whether a head in progress began within the bytes just parsed).
        self._reading_head = True
        self._head_left = self._head_cap
        self._completed = 0
        self._refusal: ServiceError | None = None
        self._parser_dead = False
        # the request being parsed
        self._url = b""
        self._headers: Headers = []
        self._chunks: list[bytes] = []
        self._size = 0
        self._cap = 0
        self._too_large = False
        self._close_after = False  # the request being parsed ends the connection
        # the request on the fast lane (`_busy`), until its answer is written
        self._busy = False
        self._busy_keep_alive = True
        self._busy_started = 0.0
        self._busy_path = b""

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        state = self._state
        if len(state.connections) >= state.max_connections:
            state.refuse(self.last_activity)
            self._reject(
                TooManyConnections(
                    f"The server holds as many connections as it may ({state.max_connections});"
                    " retry shortly, or reuse a keep-alive connection."
                )
            )
            return
        self._client = transport.get_extra_info("peername")
        self._server = transport.get_extra_info("sockname")
        state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._state.connections.discard(self)
        if self._stream_flow is not None:
            self._stream_flow.cancel()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.last_activity = self._loop.time()
        if self._reading_head:
            if len(data) > self._head_left:
                self._feed_bounded(data)
                return
            self._head_left -= len(data)
        try:  # `_feed`, inlined: this is every request's path
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
            self._parse_failed(error)

    def _feed(self, data: bytes | memoryview) -> None:
        if self._parser_dead:
            return
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as error:
            self._parse_failed(error)

    def _parse_failed(self, error: Exception) -> None:
        """Answer why parsing stopped: a cap or deadline refusal, or bytes that are not HTTP."""
        if isinstance(error, httptools.HttpParserUpgrade):
            self._reject(MalformedRequest("Protocol upgrades are not supported."))
        elif self._refusal is not None:
            self._reject(self._refusal)
        elif not self._parser_dead:  # dead: stopped on purpose, already answered
            self._reject(MalformedRequest(f"Malformed HTTP request: {error}"))

    def _feed_bounded(self, data: bytes) -> None:
        """Parse `data`, which holds more bytes than the head in progress may still take.

        Only what the head may take is parsed first: if the head is still incomplete at its cap,
        the request is refused without the parser ever buffering the rest. A head that began
        inside the parsed part is counted from the next part on (at most one cap uncounted).
        """
        view = memoryview(data)
        while view:
            if not self._reading_head or len(view) <= self._head_left:
                if self._reading_head:
                    self._head_left -= len(view)
                self._feed(view)
                return
            room = max(self._head_left, 0)
            completed = self._completed
            self._feed(view[:room])
            if self._parser_dead:
                return
            if self._reading_head and self._completed == completed:
                self._reject(
                    HeadersTooLarge(
                        f"The request head is larger than {self._head_cap} bytes "
                        "(--max-headers-total-bytes); send fewer or shorter headers."
                    )
                )
                return
            view = view[room:]

    def _refuse(self, error: ServiceError) -> _StopParsing:
        """Remember why parsing stops; the caller raises what this returns from its callback."""
        self._refusal = error
        return _StopParsing()

    def pause_writing(self) -> None:
        self._drained = self._loop.create_future()
        self._drain_since = self._loop.time()
        if self._stream_flow is not None:
            self._stream_flow.pause()

    def resume_writing(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None
        if self._stream_flow is not None:
            self._stream_flow.resume()

    # -- httptools callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._close_after = False
        self._url = b""
        self._headers = []
        self._chunks = []
        self._size = 0
        self._too_large = False
        if self._head_since is None:  # a new connection's first head is timed from its start
            self._head_since = self.last_activity

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._line_cap:
            raise self._refuse(
                UriTooLong(
                    f"The request line is longer than {self._line_cap} bytes "
                    "(--max-request-line-bytes); send a shorter URL."
                )
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        # The count is checked once the head is in: the head's byte cap already bounds it.
        if len(name) + len(value) > self._header_cap:
            shown = loggable(name.decode("latin-1"), 64)
            raise self._refuse(
                HeadersTooLarge(
                    f"Header {shown} is {len(name) + len(value)} bytes, more than the "
                    f"{self._header_cap} one header may hold (--max-header-bytes); send a "
                    "shorter value."
                )
            )
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if len(self._headers) > self._count_cap:
            raise self._refuse(
                HeadersTooLarge(
                    f"The request has more than {self._count_cap} headers (--max-header-count);"
                    " send fewer."
                )
            )
        self._reading_head = False
        self._head_since = None
        self._body_since = self.last_activity
        url = self._url
        if url.startswith(_PREFIX) and url.split(b"?", 1)[0].endswith((_SUFFIX, _STREAM_SUFFIX)):
            self._cap = self._invocation_cap
        elif url == b"/" or url.startswith(b"/?"):
            self._cap = self._control_cap
        else:
            self._cap = _OTHER_BODY_CAP
        for name, value in self._headers:
            if name == b"expect" and value.lower() == b"100-continue":
                assert self._transport is not None
                self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._too_large:
            if self._size > _DRAIN_FACTOR * self._cap:
                self._abandon_body()
            return
        if self._size > self._cap:
            self._too_large = True
            self._chunks = []  # keep reading to the end of the body, but store none of it
            return
        self._chunks.append(body)

    def _abandon_body(self) -> None:
        """A body far past its cap: answer it (as too large) now and close after the answer,
        rather than drain an unbounded number of bytes to keep the connection usable."""
        self._parser_dead = True
        self._body_since = None
        if self._transport is not None:
            self._transport.pause_reading()
        self._close_after = True  # answered with no body, as any body past its cap, then closed
        self.on_message_complete()
        raise _StopParsing()

    def on_message_complete(self) -> None:
        if self._too_large:
            body: bytes | None = None
        elif len(self._chunks) == 1:
            body = self._chunks[0]
        else:
            body = b"".join(self._chunks)
        self._chunks = []
        self._reading_head = True
        self._head_left = self._head_cap
        self._body_since = None
        self._completed += 1
        parser = self._parser
        method = parser.get_method()
        keep_alive = parser.should_keep_alive() and not self._close_after
        url = self._url
        if (
            self._begin is not None
            and method == b"POST"
            and not self._busy
            and self._worker is None
            and not self._closing
        ):
            path = url.partition(b"?")[0] if b"?" in url else url
            if path.startswith(_PREFIX) and path.endswith(_SUFFIX) and len(path) > _SHORTEST:
                self._serve_fast(path, url, body, keep_alive)
                return
        request = _Request(
            method=method,
            url=url,
            version=parser.get_http_version(),
            headers=self._headers,
            body=body,
            keep_alive=keep_alive,
        )
        self._queue.append(request)
        if len(self._queue) > 8 and self._transport is not None:
            self._transport.pause_reading()  # a client pipelining far ahead waits its turn
        if self._worker is None and not self._busy:  # busy: `_answered` starts the worker
            self._worker = self._loop.create_task(self._serve_queue())

    # -- serving -----------------------------------------------------------------------------
    def _serve_fast(self, path: bytes, url: bytes, body: bytes | None, keep_alive: bool) -> None:
        """Hand an invocation to the fast lane; `_answered` writes its answer."""
        assert self._begin is not None
        name = _decoded(path[_NAME_FROM:_NAME_TO])
        self._busy = True
        self._busy_keep_alive = keep_alive
        if self._access_log:
            self._busy_started = time.perf_counter()
            self._busy_path = path
        try:
            answer = self._begin(
                name,
                self._headers,
                body,
                url,
                self._client[0] if self._client else None,
                self._answered,
            )
        except Exception:  # the adapter maps every error itself; this is a last resort
            log.exception("internal error on %s", loggable(url.decode("latin-1")))
            answer = self._internal_error()
        if answer is not None:
            self._answered(*answer)

    def _answered(self, status: int, headers: Headers, body: bytes) -> None:
        """The fast lane's answer: write it, then go on as the worker would after a request."""
        self._busy = False
        keep_alive = self._busy_keep_alive
        self._write(status, headers, body, keep_alive)
        self.last_activity = self._loop.time()
        if self._access_log:
            path = self._busy_path
            log_request(
                self._client[0] if self._client else "-",
                "POST",
                path.decode("latin-1"),
                path[_NAME_FROM:_NAME_TO].decode("latin-1"),
                status,
                self._busy_started,
            )
        if not keep_alive:
            self._close()
        elif self._queue and not self._closing:  # pipelined behind it: the worker serves them
            self._worker = self._loop.create_task(self._serve_queue(self._drained is not None))

    async def _serve_queue(self, drain_first: bool = False) -> None:
        try:
            if drain_first and self._drained is not None:
                await self._drained
            while self._queue and not self._closing:
                request = self._queue.popleft()
                await self._serve(request)
                if self._transport is not None and not self._closing and not self._parser_dead:
                    self._transport.resume_reading()
                if self._drained is not None:
                    await self._drained
                if not request.keep_alive:
                    self._close()
                    return
        finally:
            self._worker = None
            self.last_activity = self._loop.time()

    async def _serve(self, request: _Request) -> None:
        started = time.perf_counter()
        path, _, query = request.url.partition(b"?")
        if (
            request.method == b"POST"
            and path.startswith(_PREFIX)
            and path.endswith(_SUFFIX)
            and len(path) > len(_PREFIX) + len(_SUFFIX)
        ):
            name = _decoded(path[len(_PREFIX) : -len(_SUFFIX)])
            try:
                status, headers, body = await self._invocations(
                    name,
                    request.headers,
                    request.body,
                    url=request.url,
                    peer=self._client[0] if self._client else None,
                )
            except Exception:  # the adapter maps every error itself; this is a last resort
                log.exception("internal error on %s", loggable(request.url.decode("latin-1")))
                status, headers, body = self._internal_error()
            self._write(status, headers, body, request.keep_alive)
        elif (
            self._streams is not None
            and request.method == b"POST"
            and path.startswith(_PREFIX)
            and path.endswith(_STREAM_SUFFIX)
            and len(path) > len(_PREFIX) + len(_STREAM_SUFFIX)
        ):
            name = _decoded(path[len(_PREFIX) : -len(_STREAM_SUFFIX)])
            status = await self._serve_stream(name, request)
        else:
            await self._serve_asgi(request, path, query)
            return  # the ASGI app writes its own access-log line (with the operation name)
        if self._state.settings.access_log:
            log_request(
                self._client[0] if self._client else "-",
                request.method.decode("latin-1"),
                path.decode("latin-1"),
                name,
                status,
                started,
            )

    async def _serve_stream(self, name: str, request: _Request) -> int:
        """InvokeEndpointWithResponseStream: streamed by the handler, or refused whole."""
        assert self._streams is not None
        out = ResponseStream(self, request.keep_alive)
        try:
            answer = await self._streams(
                name,
                request.headers,
                request.body,
                request.url,
                self._client[0] if self._client else None,
                out,
            )
        except Exception:  # the adapter maps every error itself; this is a last resort
            log.exception("internal error on %s", loggable(request.url.decode("latin-1")))
            answer = None if out.started else self._internal_error()
            if out.started:
                out.abort()
        finally:
            self._stream_flow = None
        if answer is None:
            return 200
        self._write(*answer, request.keep_alive)
        return answer[0]

    async def _serve_asgi(self, request: _Request, path: bytes, query: bytes) -> int:
        """Run the ASGI app for one fully read request, buffering its (whole) answer."""
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.version,
            "method": request.method.decode("latin-1"),
            "scheme": "http",
            "path": _decoded(path, "utf-8"),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": request.headers,
            "client": self._client,
            "server": self._server,
            "polyhost.body_too_large": request.body is None,
        }
        received = False
        status = 500
        out_headers: Headers = []
        chunks: list[bytes] = []
        complete = False

        async def receive() -> Message:
            nonlocal received
            if not received:
                received = True
                return {"type": "http.request", "body": request.body or b"", "more_body": False}
            await asyncio.Event().wait()  # nothing more will come: the body was read whole
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            nonlocal status, out_headers, complete
            if message["type"] == "http.response.start":
                status = int(message["status"])
                out_headers = [
                    (bytes(k), bytes(v))
                    for k, v in message.get("headers", [])
                    if bytes(k).lower() != b"content-length"
                ]
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    complete = True

        try:
            await self._app(scope, receive, send)
        except Exception:
            log.exception("internal error on %s", loggable(request.url.decode("latin-1")))
            status, out_headers, body = self._internal_error()
            self._write(status, out_headers, body, request.keep_alive)
            return status
        if not complete and not chunks and status == 500:
            status, out_headers, body = self._internal_error()
            self._write(status, out_headers, body, request.keep_alive)
            return status
        self._write(status, out_headers, b"".join(chunks), request.keep_alive)
        return status

    @staticmethod
    def _internal_error() -> tuple[int, Headers, bytes]:
        return rest_json_error(internal_failure())

    def _write(self, status: int, headers: Headers, body: bytes, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None or self._closing or transport.is_closing():
            return
        parts = [_status_line(status)]
        for name, value in headers:
            parts += [name, b": ", value, b"\r\n"]
        parts.append(b"content-length: %d\r\n" % len(body))
        if not keep_alive:
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        head = b"".join(parts)
        if len(body) < 16384:
            transport.write(head + body)
        else:
            transport.writelines([head, body])

    def _reject(self, error: ServiceError) -> None:
        """Answer `error` (AWS JSON shape) and close: nothing more is read on this connection."""
        self._parser_dead = True
        self._queue.clear()
        status, headers, body = aws_json_error(error)
        self._write(status, headers, body, keep_alive=False)
        self._close()

    # -- lifetime ----------------------------------------------------------------------------
    def _close(self) -> None:
        self._closing = True
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def enforce_deadlines(self, now: float) -> None:
        """Close this connection if it is past a deadline: 408 for a request head or body that
        did not arrive in time, silently for an idle keep-alive connection, and at once for a
        client that has not read its answer within the body timeout."""
        settings = self._state.settings
        if self._drained is not None:
            if now - self._drain_since > settings.body_timeout_s and self._transport is not None:
                self._closing = True
                self._transport.abort()  # close() would wait for a reader that never comes
            return
        if self._worker is not None or self._busy:
            return  # answering; the router bounds that, and what follows is timed after it
        if self._head_since is not None:
            if now - self._head_since > settings.header_timeout_s:
                self._reject(
                    RequestTimeout(
                        f"The request head did not arrive within {settings.header_timeout_s:g} s"
                        " (--header-timeout); send the whole head at once."
                    )
                )
        elif self._body_since is not None:
            if now - self._body_since > settings.body_timeout_s:
                self._reject(
                    RequestTimeout(
                        f"The request body did not arrive within {settings.body_timeout_s:g} s"
                        " (--body-timeout)."
                    )
                )
        elif now - self.last_activity > settings.keep_alive_timeout_s:
            self._close()

    def close_if_idle(self) -> None:
        if self._worker is None and not self._busy:
            self._close()


def sweep_interval(settings: Settings, every_s: float) -> float:
    """How often the sweep runs: often enough that no deadline is overrun by more than half."""
    shortest = min(
        settings.keep_alive_timeout_s, settings.header_timeout_s, settings.body_timeout_s
    )
    return max(0.05, min(every_s, shortest / 2))


async def sweep_idle_connections(state: ServerState, every_s: float = 5.0) -> None:
    """Enforce every connection's deadlines (head, body, keep-alive, slow reader) and log
    refused connections; runs for the server's life.

    One sweep every few seconds instead of a timer per connection re-armed on every request:
    the timer churn showed up on the hot path's profile. A deadline is thus overrun by at most
    one interval, which `sweep_interval` keeps to half the shortest timeout.
    """
    loop = asyncio.get_running_loop()
    interval = sweep_interval(state.settings, every_s)
    while True:
        await asyncio.sleep(interval)
        now = loop.time()
        for connection in list(state.connections):
            connection.enforce_deadlines(now)
        state.log_refusals(now)


async def shutdown_connections(state: ServerState, timeout_s: float) -> None:
    """Close idle connections now; give busy ones up to `timeout_s` to finish, then close."""
    deadline = time.monotonic() + timeout_s
    while True:
        for connection in list(state.connections):
            connection.close_if_idle()
        if not state.connections or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.05)
    for connection in list(state.connections):
        connection._close()
