"""InvokeEndpointWithResponseStream semantics: the router's choices, the container's answer
forwarded piece by piece.

The route is picked exactly as `Router.invoke` picks it (variant, replica, Direct or Serial,
with the same validation errors); only the container that answers the client is streamed. In
a Serial pipeline the earlier containers are called as InvokeEndpoint calls them (their answers
are the next one's request, bounded by `--max-interchange-bytes`) and the last one streams.

What the router hands on is bytes, never parsed: each piece the upstream parser delivers of the
container's body goes to the consumer (`StreamConsumer`, the wire adapter) in the same callback,
so nothing is buffered whole, nothing waits for a task to wake, and the time to the first byte
is the container's own. Back-pressure runs the other way through `StreamControl`: the adapter
pauses the stream when its client's transport holds more than its high-water mark, and the
upstream connection stops reading until the client has caught up, so a slow reader slows the
container down (TCP's window fills) instead of growing the server's memory.

Bounds, each with the error it ends in:
- the whole stream within `--invocation-timeout`, and no gap between two pieces longer than
  `--stream-idle-timeout` (not counted while the client is the one not reading): a
  ModelInvocationTimeExceeded;
- at most `--max-stream-bytes` of body: StreamBroken, the connection to the container closed;
- a stream is a call in flight on its container's pool, so it counts against `--max-inflight`
  as any invocation does, and one past it is refused at once with a 503.

A failure before the first piece reached the consumer raises the ServiceError InvokeEndpoint
would raise (ModelError 424 for an error answer, 503 for an unavailable container...); after
it the consumer gets `broken(error_code, message)` and the stream ends with it, never silently.

Pools other than `UpstreamPool` (the Ray backend's remote containers, a test's fake) cannot
stream: their whole answer is one part, bounded by `--max-body-bytes` like InvokeEndpoint's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from polyhost.errors import InvokeValidationError, ModelError
from polyhost.router.router import (
    _INVOCATIONS,
    ConnectionRefused,
    InvokeRequest,
    Router,
)
from polyhost.router.table import ContainerRoute, EndpointRoute, ReplicaRoute, VariantRoute
from polyhost.router.upstream import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamSaturated,
    UpstreamTimeout,
    _Connection,
)
from polyhost.settings import Settings

log = logging.getLogger("polyhost.router.streaming")

# ModelStreamError's codes, as SageMaker's model documents them.
STREAM_BROKEN = "StreamBroken"
TIME_EXCEEDED = "ModelInvocationTimeExceeded"


class StreamControl(Protocol):
    """What the consumer may do to a stream in progress."""

    def pause(self) -> None:
        """Stop reading from the container until `resume` (the client is not keeping up)."""

    def resume(self) -> None: ...

    def cancel(self) -> None:
        """The client went away: close the container's connection, end the stream quietly."""


class StreamConsumer(Protocol):
    """Where a stream goes (the wire adapter). `start` comes once, before any part; then
    `part` for each piece, and at most one of `end` or `broken`. Neither is called when the
    stream fails before its first part: `stream` raises the caller's error instead."""

    def start(
        self,
        control: StreamControl,
        variant: str,
        content_type: bytes,
        custom_attributes: bytes | None,
    ) -> None: ...

    def part(self, data: bytes) -> None: ...

    def end(self) -> None: ...

    def broken(self, error_code: str, message: str) -> None: ...


class _Cancelled(Exception):
    """The client went away: the stream ends with nothing more to say to anyone."""


class _Broken(Exception):
    """The stream ended early for a reason of polyhost's own (a bound): code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Stream:
    """One streamed container call: the upstream connection's sink (`StreamSink`) and the
    consumer's `StreamControl`. Settles `finished` once: an UpstreamResponse (the end of a
    streamed answer, or an error answer collected whole) or an exception."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        connection: _Connection,
        consumer: StreamConsumer,
        start: tuple[str, bytes | None],
        deadline: float,
        idle_s: float,
        max_bytes: int,
        container: ContainerRoute,
    ) -> None:
        self._loop = loop
        self._connection = connection
        self._consumer = consumer
        self._variant, self._fallback_type = start
        self._deadline = deadline
        self._idle_s = idle_s
        self._max_bytes = max_bytes
        self._container = container
        self.finished: asyncio.Future[UpstreamResponse] = loop.create_future()
        self.streaming = False  # a 2xx head came: its body is being forwarded
        self.sent = 0  # body bytes handed to the consumer
        self.sent_at = time.perf_counter()
        self._last = 0.0  # loop time of the last piece (or of the head, or of a resume)
        self._paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._arm()

    # -- timers: one per stream, re-armed only when it fires or the stream resumes -----------
    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        at = self._deadline
        if self.streaming and not self._paused:
            at = min(at, self._last + self._idle_s)
        self._timer = self._loop.call_at(at, self._check)

    def _check(self) -> None:
        self._timer = None
        if self.finished.done():
            return
        now = self._loop.time()
        if now >= self._deadline:
            self._stop(UpstreamTimeout("timed out"))
        elif self.streaming and not self._paused and now - self._last >= self._idle_s:
            self._stop(
                _Broken(
                    TIME_EXCEEDED,
                    f"no part of the answer came for {self._idle_s:g} s (--stream-idle-timeout)",
                )
            )
        else:
            self._arm()

    def _stop(self, error: BaseException) -> None:
        """End the stream with `error` and drop the container's connection (the rest of its
        answer is never read)."""
        if not self.finished.done():
            self.finished.set_exception(error)
        if self._timer is not None:
            self._timer.cancel()
        self._connection.close()

    # -- StreamSink (called from the upstream connection's parser) ---------------------------
    def done(self) -> bool:
        return self.finished.done()

    def head(self, status: int, headers: dict[bytes, bytes], /) -> bool:
        if status >= 400:  # collected whole (bounded), for the ModelError that quotes it
            return False
        self.streaming = True
        self._last = self._loop.time()
        self._arm()
        content_type = (
            headers.get(b"content-type") or self._fallback_type or b"application/octet-stream"
        )
        self._consumer.start(
            self,
            self._variant,
            content_type,
            headers.get(b"x-amzn-sagemaker-custom-attributes"),
        )
        return True

    def data(self, chunk: bytes, /) -> None:
        if self.finished.done():
            return
        if not self.sent:
            self._container.counters.time_to_first_byte.observe(
                (time.perf_counter() - self.sent_at) * 1e6
            )
        self.sent += len(chunk)
        if self.sent > self._max_bytes:
            self._stop(
                _Broken(
                    STREAM_BROKEN,
                    f"the answer is longer than {self._max_bytes} bytes, the most one stream "
                    "may carry (--max-stream-bytes); polyhost closed the connection",
                )
            )
            return
        self._last = self._loop.time()
        self._consumer.part(chunk)

    def set_result(self, response: UpstreamResponse, /) -> None:
        if not self.finished.done():
            self.finished.set_result(response)
        if self._timer is not None:
            self._timer.cancel()

    def set_exception(self, error: BaseException, /) -> None:
        if not self.finished.done():
            self.finished.set_exception(error)
        if self._timer is not None:
            self._timer.cancel()

    # -- StreamControl (called by the consumer) ----------------------------------------------
    def pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._connection.pause_reading()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            self._connection.resume_reading()
            if not self.finished.done():
                self._last = self._loop.time()  # the client's wait is not the container's
                self._arm()

    def cancel(self) -> None:
        self._stop(_Cancelled())


class StreamRouter:
    """Serves InvokeEndpointWithResponseStream from the router's table."""

    def __init__(self, router: Router, settings: Settings) -> None:
        self._router = router
        self._timeout = settings.invocation_timeout_s
        self._idle_s = settings.stream_idle_timeout_s
        self._max_stream = settings.max_stream_bytes
        self._max_body = settings.max_body_bytes
        self._max_interchange = settings.max_interchange_bytes

    async def stream(
        self, endpoint_name: str, request: InvokeRequest, consumer: StreamConsumer
    ) -> None:
        """Stream the answer to `request` into `consumer`; raises the ServiceError of a
        request that failed before its first part (then the consumer heard nothing but
        perhaps `start`)."""
        router = self._router
        route = router.route(endpoint_name)
        if route is None:
            raise router._missing(endpoint_name)
        if route.for_components or request.inference_component is not None:
            route = router._component_route(route, request.inference_component)
        if route.multi_model:
            raise InvokeValidationError(
                f"Endpoint {endpoint_name} is a multi-model endpoint, which "
                "InvokeEndpointWithResponseStream cannot reach (it names no TargetModel): "
                "call InvokeEndpoint with TargetModel."
            )
        variant = router._variant(route, request.target_variant)
        gate = router.gate(route, variant)
        if gate is None:
            await self._stream_on(route, variant, request, consumer)
            return
        gate.enter()  # a serverless variant: MaxConcurrency, and a cold start if need be
        try:
            route, variant = await router.warmed(route, variant, gate)
            await self._stream_on(route, variant, request, consumer)
        finally:
            gate.leave()

    async def _stream_on(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        request: InvokeRequest,
        consumer: StreamConsumer,
    ) -> None:
        router = self._router
        if route.shadows:  # the shadow's copy is an InvokeEndpoint call, its answer dropped
            router.shadows.mirror(route, request, captured=False)
        replica = variant.pick_replica(request.target_container)
        try:
            await self._on_replica(route, variant, replica, request, consumer)
        except ConnectionRefused:
            # Nothing reached any container: once more on another replica, as `invoke` does.
            other = variant.pick_replica(request.target_container, avoid=replica)
            if other is replica:
                raise
            await self._on_replica(route, variant, other, request, consumer)

    async def _on_replica(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        replica: ReplicaRoute,
        request: InvokeRequest,
        consumer: StreamConsumer,
    ) -> None:
        started = time.perf_counter()
        router = self._router
        replica.outstanding += 1
        try:
            hostname = request.target_container
            body = request.body
            content_type = request.content_type
            if variant.mode == "Direct":
                found = None if hostname is None else replica.by_hostname.get(hostname)
                if found is None:
                    raise router._no_direct_target(route, replica, hostname)
                last = found
            else:
                if hostname is not None:
                    raise router._not_direct(route)
                *earlier, last = replica.containers
                for index, container in enumerate(earlier):
                    headers = router._headers(request, content_type, None)
                    response, _ = await router._call(
                        route, container, body, headers, self._max_interchange, first=index == 0
                    )
                    body = response.body
                    content_type = response.headers.get(b"content-type", content_type)
            first = variant.mode == "Direct" or len(replica.containers) == 1
            headers = router._headers(request, content_type, request.accept)
            await self._stream_from(
                route, variant, last, body, headers, content_type, consumer, first, started
            )
        finally:
            replica.outstanding -= 1

    async def _stream_from(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        container: ContainerRoute,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        content_type: bytes | None,
        consumer: StreamConsumer,
        first: bool,
        started: float,
    ) -> None:
        router = self._router
        counters = container.counters
        counters.invocations += 1
        counters.streams += 1
        if not container.available:
            raise router._unavailable(route, container)
        pool = container.pool
        if type(pool) is not UpstreamPool:
            await self._whole(route, variant, container, body, headers, content_type, consumer)
            return
        if pool.inflight >= pool.max_inflight:
            counters.errors_5xx += 1
            error = UpstreamSaturated(f"{pool.inflight} requests already in flight")
            raise router._upstream_failure(error, route, container, self._max_body)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        data = pool.encode(_INVOCATIONS, headers, body)
        pool.inflight += 1
        try:
            while True:
                try:
                    connection, reused = await pool.connection(deadline)
                except UpstreamError as error:
                    raise router._call_failure(
                        error, route, container, self._max_body, first
                    ) from None
                stream = _Stream(
                    loop,
                    connection,
                    consumer,
                    (variant.name, content_type),
                    deadline,
                    self._idle_s,
                    self._max_stream,
                    container,
                )
                counters.overhead_latency.observe((stream.sent_at - started) * 1e6)
                connection.send_stream(data, self._max_body, stream)
                try:
                    response = await stream.finished
                except UpstreamConnectionError as error:
                    # A kept-alive connection the container had closed: once more, fresh.
                    if reused and not connection.received_any and loop.time() < deadline:
                        continue
                    self._failed(route, container, stream, error, consumer)
                    return
                except asyncio.CancelledError:
                    connection.close()
                    raise
                except _Cancelled:
                    return
                except (UpstreamError, _Broken) as error:
                    self._failed(route, container, stream, error, consumer)
                    return
                finally:
                    if stream.finished.done() and not connection.closed:
                        pool.release(connection)
                break
        finally:
            pool.inflight -= 1
        elapsed_us = (time.perf_counter() - stream.sent_at) * 1e6
        counters.container_latency.observe(elapsed_us)
        if not stream.streaming:  # an error answer, collected whole
            raise router._model_error(route, container, response)
        consumer.end()

    def _failed(
        self,
        route: EndpointRoute,
        container: ContainerRoute,
        stream: _Stream,
        error: UpstreamError | _Broken,
        consumer: StreamConsumer,
    ) -> None:
        """A stream that ended early: the caller's error before its first part, else the
        ModelStreamError event that ends it (the container's connection is closed)."""
        router = self._router
        container.counters.errors_5xx += 1
        where = f"See {router._log_hint(route, container)} for more information."
        if not stream.sent:
            if isinstance(error, _Broken):
                message = f"Container {container.hostname} {error.message}. {where}"
                raise ModelError(message, log_stream_arn=router._log_arn(route)) from None
            raise router._upstream_failure(error, route, container, self._max_body) from None
        if isinstance(error, _Broken):
            code, message = error.code, f"Container {container.hostname}: {error.message}."
        elif isinstance(error, UpstreamTimeout):
            code = TIME_EXCEEDED
            message = (
                f"Container {container.hostname} did not finish its answer within "
                f"{self._timeout:g} s (--invocation-timeout)."
            )
        else:
            code = STREAM_BROKEN
            message = (
                f"Container {container.hostname} closed the connection before its answer was "
                f"complete ({error}), after {stream.sent} bytes."
            )
        consumer.broken(code, f"{message} {where}")

    async def _whole(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        container: ContainerRoute,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        content_type: bytes | None,
        consumer: StreamConsumer,
    ) -> None:
        """A pool that cannot stream: its whole answer as one part (`Router._call` counts it,
        so the stream's own count is taken back)."""
        container.counters.invocations -= 1
        response, _ = await self._router._call(
            route, container, body, headers, self._max_body, first=True
        )
        result = Router._result(response, variant, content_type)
        consumer.start(_NoControl(), result.variant, result.content_type, result.custom_attributes)
        if result.body:
            consumer.part(result.body)
        consumer.end()


class _NoControl:
    """The control of an answer that arrived whole: there is nothing left to pause."""

    def pause(self) -> None:
        return None

    def resume(self) -> None:
        return None

    def cancel(self) -> None:
        return None


__all__ = [
    "STREAM_BROKEN",
    "TIME_EXCEEDED",
    "StreamConsumer",
    "StreamControl",
    "StreamRouter",
]
