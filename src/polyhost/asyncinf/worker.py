"""Runs queued InvokeEndpointAsync requests through the router and writes their answers to S3.

One dispatch loop on the event loop, woken by a new request, a finished one, or a short poll.
For each endpoint with requests waiting it reads the route the deployer published: a variant
takes at most MaxConcurrentInvocationsPerInstance times its instances at once, and each request
is sent to a named variant, where the router's least-outstanding choice of replica keeps every
instance within the bound (no other caller reaches an async-only endpoint). Requests start in
the order they were accepted. Until an endpoint serves (restoring after a restart, updating) its
requests wait; a retryable refusal (503) puts a request back where it was, briefly. A request
still waiting when its RequestTTLSeconds run out fails with that reason.

Once an answer (or failure) is in S3, the endpoint's NotificationConfig is honoured
(`notify.py`): a publish that fails is logged and counted, never the request's failure.

Blocking work (the queue's commits, S3, SNS, the input's download) runs in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from polyhost.asyncinf.notify import Notifier
from polyhost.asyncinf.queue import AsyncQueue, AsyncRequest
from polyhost.asyncinf.storage import OutputFailed, OutputStore, fetch_input
from polyhost.control.seam import AsyncInferenceSpec
from polyhost.errors import ServiceError, ServiceUnavailable
from polyhost.modeldata.errors import ArtifactError
from polyhost.modeldata.hosts import HostPolicy
from polyhost.router.router import InvokeRequest, Router
from polyhost.router.table import EndpointRoute
from polyhost.settings import Settings

log = logging.getLogger("polyhost.asyncinf")

RETRY_AFTER_S = 1.0
POLL_S = 0.25


class AsyncWorker:
    def __init__(
        self,
        queue: AsyncQueue,
        router: Router,
        settings: Settings,
        *,
        outputs: OutputStore | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._queue = queue
        self._router = router
        self._clock = clock
        self._max_input = settings.async_max_input_bytes
        self._io_timeout = settings.async_fetch_timeout_s
        self._work = Path(settings.state_dir) / "async-work"
        self._policy = HostPolicy(settings.allow_model_hosts)
        self._outputs = outputs or OutputStore(settings.async_fetch_timeout_s)
        self.notifier = notifier or Notifier(settings.region, settings.async_fetch_timeout_s)
        # The AsyncInferenceConfig last seen per endpoint: a request that fails while its
        # endpoint is not serving is still notified as its endpoint asked.
        self._configs: dict[str, AsyncInferenceSpec] = {}
        self._inflight: dict[tuple[str, str], int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop_task = loop.create_task(self._run())

    def notify(self) -> None:
        """A request was queued: look at once rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop dispatching and cut running requests short: they stay `running` in the queue and
        run again at the next start (after a look at whether their answer reached S3)."""
        tasks = [t for t in (self._loop_task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def inflight(self, endpoint: str) -> int:
        return sum(n for (name, _), n in self._inflight.items() if name == endpoint)

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            self._wake.clear()
            try:
                await self._dispatch()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("asynchronous dispatch failed; retrying")

    async def _dispatch(self) -> None:
        now = self._clock()
        for endpoint in await asyncio.to_thread(self._queue.endpoints_waiting, now):
            route = self._router.route(endpoint)
            if route is None or route.async_inference is None:
                await self._expire_waiting(endpoint, now)
                continue
            self._configs[endpoint] = route.async_inference
            await self._start(route, now)

    def _free(self, route: EndpointRoute) -> dict[str, int]:
        assert route.async_inference is not None
        per_instance = route.async_inference.max_concurrent_per_instance
        return {
            v.name: per_instance * len(v.replicas) - self._inflight.get((route.name, v.name), 0)
            for v in route.variants
            if v.weight > 0 or len(route.variants) == 1
        }

    async def _start(self, route: EndpointRoute, now: float) -> None:
        free = self._free(route)
        total = sum(max(n, 0) for n in free.values())
        if total <= 0:
            return
        # One dispatch at a time, so requests start in the order they were taken.
        for request in await asyncio.to_thread(self._queue.take, route.name, total, now):
            variant = max(free, key=lambda name: free[name])
            free[variant] -= 1
            key = (route.name, variant)
            self._inflight[key] = self._inflight.get(key, 0) + 1
            task = asyncio.get_running_loop().create_task(self._serve(request, variant))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _expire_waiting(self, endpoint: str, now: float) -> None:
        """An endpoint not serving keeps its requests waiting, but not past their TTL."""
        for request in await asyncio.to_thread(self._queue.take, endpoint, 100, now):
            if now >= request.expires:
                await self._fail(request, self._expired(request))
            else:
                await asyncio.to_thread(self._queue.retry_later, request.seq, now + RETRY_AFTER_S)

    @staticmethod
    def _expired(request: AsyncRequest) -> str:
        ttl = request.expires - request.received
        return (
            f"Request expired: it waited in the queue longer than its RequestTTLSeconds "
            f"({ttl:g} seconds) without an instance to run it."
        )

    async def _serve(self, request: AsyncRequest, variant: str) -> None:
        try:
            await self._serve_one(request, variant)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("asynchronous request %s failed", request.inference_id)
            await self._fail(request, "An internal error occurred; see the server log.")
        finally:
            key = (request.endpoint, variant)
            self._inflight[key] -= 1
            if not self._inflight[key]:
                del self._inflight[key]
            self._wake.set()

    async def _serve_one(self, request: AsyncRequest, variant: str) -> None:
        if self._clock() >= request.expires:
            await self._fail(request, self._expired(request))
            return
        if request.recovered and await self._already_written(request):
            return
        try:
            body = await asyncio.to_thread(
                fetch_input,
                request.input_location,
                self._work,
                self._max_input,
                self._io_timeout,
                self._policy,
            )
        except ArtifactError as error:
            await self._fail(request, f"Could not read InputLocation: {error.message}")
            return
        invoke = InvokeRequest(
            body=body,
            content_type=_bytes(request.content_type),
            accept=_bytes(request.accept),
            custom_attributes=_bytes(request.custom_attributes),
            target_variant=variant,
            inference_id=request.inference_id.encode(),
        )
        try:
            result = await asyncio.wait_for(
                self._router.invoke(request.endpoint, invoke, queued=True), request.timeout_s
            )
        except TimeoutError:
            await self._fail(
                request,
                f"ModelInvocationTimeExceeded: the model did not answer within "
                f"InvocationTimeoutSeconds ({request.timeout_s:g} seconds).",
            )
            return
        except ServiceUnavailable as error:
            if self._clock() + RETRY_AFTER_S < request.expires:
                log.info("asynchronous request %s waits: %s", request.inference_id, error.message)
                await asyncio.to_thread(
                    self._queue.retry_later, request.seq, self._clock() + RETRY_AFTER_S
                )
                return
            await self._fail(request, f"{error.code}: {error.message}")
            return
        except ServiceError as error:
            await self._fail(request, f"{error.code}: {error.message}")
            return
        content_type = result.content_type.decode("latin-1")
        try:
            await asyncio.to_thread(
                self._outputs.put, request.output_location, result.body, content_type
            )
        except OutputFailed as error:
            await self._fail(request, f"The answer could not be written: {error}")
            return
        await asyncio.to_thread(self._queue.finish, request.seq, True)
        await self._notify(request, ok=True, content_type=content_type, body=result.body)

    async def _already_written(self, request: AsyncRequest) -> bool:
        """A request a crash cut short: finished already when its answer (or failure) is in S3,
        since its inference id names the object."""
        try:
            if await asyncio.to_thread(self._outputs.exists, request.output_location):
                await asyncio.to_thread(self._queue.finish, request.seq, True)
                return True
            if await asyncio.to_thread(self._outputs.exists, request.failure_location):
                await asyncio.to_thread(
                    self._queue.finish, request.seq, False, "failed before a restart"
                )
                return True
        except OutputFailed as error:
            log.warning("asynchronous request %s: %s", request.inference_id, error)
        return False

    async def _fail(self, request: AsyncRequest, reason: str) -> None:
        """Write the failure object (the reason, as text) and record the failure."""
        try:
            await asyncio.to_thread(
                self._outputs.put,
                request.failure_location,
                reason.encode(),
                "text/plain; charset=utf-8",
            )
        except OutputFailed as error:
            log.warning("asynchronous request %s: %s", request.inference_id, error)
        await asyncio.to_thread(self._queue.finish, request.seq, False, reason)
        await self._notify(
            request,
            ok=False,
            content_type="text/plain; charset=utf-8",
            body=reason.encode(),
            reason=reason,
        )

    def _config(self, endpoint: str) -> AsyncInferenceSpec | None:
        route = self._router.route(endpoint)
        if route is not None and route.async_inference is not None:
            self._configs[endpoint] = route.async_inference
        return self._configs.get(endpoint)

    async def _notify(
        self,
        request: AsyncRequest,
        *,
        ok: bool,
        content_type: str,
        body: bytes,
        reason: str | None = None,
    ) -> None:
        await asyncio.to_thread(
            self.notifier.finished,
            self._config(request.endpoint),
            request,
            self._clock(),
            ok=ok,
            content_type=content_type,
            body=body,
            reason=reason,
        )


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else value.encode("latin-1")
