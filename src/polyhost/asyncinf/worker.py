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

S3 and SNS are reached as the model role of the variant a request runs on, where the server
maps that role (`credentials.py`); `serving` tells the role, from the specs the deployer
serves.

Metrics (`metrics/asynchronous.py`): every request that ends adds to `series` (counted, failed
or not, its time in the backlog and in all); `backlog()` counts what waits, per endpoint, for
the recorder's ApproximateBacklogSize... and for the dashboard.

The bound is on what the containers run: a request holds its variant's slot from the moment its
input is downloaded until the container answers. Up to the bound's worth of further requests
are taken ahead and download their inputs while the slots are busy (so the download does not
idle the model either), then wait for a slot in the order they come. Writing the answer, the
queue's commit and the notification happen after the slot is given back, so a slow S3 does not
idle the model; at most as many requests as the bound may be finishing so per variant (beyond
that they hold slots again), which bounds the answers held in memory.

Blocking work (the queue's commits, S3, SNS, the input's download) runs in threads of the
worker's own pool, sized for the requests it may have in flight, so it neither waits behind
nor starves the event loop's default executor (the control plane, the admin API).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from polyhost.asyncinf.credentials import AwsClients
from polyhost.asyncinf.notify import Notifier
from polyhost.asyncinf.queue import AsyncQueue, AsyncRequest
from polyhost.asyncinf.storage import OutputFailed, OutputStore
from polyhost.backends.role_credentials import RoleCredentials
from polyhost.control.seam import AsyncInferenceSpec, EndpointSpec
from polyhost.errors import ServiceError, ServiceUnavailable
from polyhost.metrics.asynchronous import AsyncSeries, BacklogSample
from polyhost.modeldata.errors import ArtifactError
from polyhost.modeldata.hosts import HostPolicy
from polyhost.router.router import InvokeRequest, Router
from polyhost.router.table import EndpointRoute
from polyhost.settings import Settings

log = logging.getLogger("polyhost.asyncinf")

RETRY_AFTER_S = 1.0
POLL_S = 0.25
IO_THREADS = 32
_T = TypeVar("_T")
# The specs of the endpoints the deployer serves now (on the event loop): which endpoints are
# asynchronous, and each variant's model role.
ServingSpecs = Callable[[], Iterable[EndpointSpec]]


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
        serving: ServingSpecs | None = None,
        role_credentials: RoleCredentials | None = None,
        series: AsyncSeries | None = None,
    ) -> None:
        """`role_credentials`: what `--role-credentials` maps (none: the server's own
        credentials for every request); `serving` what runs, so which role each variant's
        model has (none: no roles, the server's credentials)."""
        self._queue = queue
        self._router = router
        self._clock = clock
        self._max_input = settings.async_max_input_bytes
        self._io_timeout = settings.async_fetch_timeout_s
        self._work = Path(settings.state_dir) / "async-work"
        self._policy = HostPolicy(settings.allow_model_hosts)
        clients = AwsClients(
            role_credentials or RoleCredentials({}), self._io_timeout, connections=IO_THREADS
        )
        self._outputs = outputs or OutputStore(self._io_timeout, clients)
        self.notifier = notifier or Notifier(settings.region, self._io_timeout, clients)
        self._serving = serving
        self.series = series or AsyncSeries()
        # The AsyncInferenceConfig and model role last seen per endpoint: a request that fails
        # while its endpoint is not serving is still notified as its endpoint asked, as its role.
        self._configs: dict[str, AsyncInferenceSpec] = {}
        self._last_role: dict[str, str | None] = {}
        self._inflight: dict[tuple[str, str], int] = {}
        # Requests whose container answered, still writing their answer and notifying.
        self._finishing: dict[tuple[str, str], int] = {}
        self._slot_freed: dict[tuple[str, str], asyncio.Event] = {}
        # Requests taken ahead (downloading their input, or waiting for a slot), in the order
        # they take slots: the order they left the queue.
        self._turns: dict[tuple[str, str], collections.deque[int]] = {}
        self._io = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="polyhost-async")
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
        self._io.shutdown(wait=False, cancel_futures=True)

    async def _blocking(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """`fn(*args, **kwargs)` in the worker's thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, functools.partial(fn, *args, **kwargs))

    def inflight(self, endpoint: str) -> int:
        return sum(n for (name, _), n in self._inflight.items() if name == endpoint)

    async def backlog(self) -> list[BacklogSample]:
        """Every asynchronous endpoint's backlog now (on the event loop; the count is one query
        in a worker thread): each endpoint that serves with AsyncInferenceConfig, 0 when
        nothing waits, and each one whose requests wait without serving (0 instances)."""
        counts = await self._blocking(self._queue.backlog)
        now = self._clock()
        names = set(counts)
        if self._serving is not None:
            names.update(s.endpoint_name for s in self._serving() if s.async_inference)
        samples = []
        for name in sorted(names):
            size, oldest = counts.get(name, (0, now))
            route = self._router.route(name)
            instances = 0
            if route is not None and route.async_inference is not None:
                instances = sum(len(v.replicas) for v in route.variants)
            samples.append(BacklogSample(name, size, max(now - oldest, 0.0), instances))
        return samples

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
        for endpoint in await self._blocking(self._queue.endpoints_waiting, now):
            route = self._router.route(endpoint)
            if route is None or route.async_inference is None:
                await self._expire_waiting(endpoint, now)
                continue
            self._configs[endpoint] = route.async_inference
            await self._start(route, now)

    def _free(self, route: EndpointRoute) -> dict[str, int]:
        assert route.async_inference is not None
        per_instance = route.async_inference.max_concurrent_per_instance
        free = {}
        for v in route.variants:
            if v.weight <= 0 and len(route.variants) > 1:
                continue
            bound = per_instance * len(v.replicas)
            key = (route.name, v.name)
            over = max(self._finishing.get(key, 0) - bound, 0)  # finishing past the bound
            # In flight, and taken ahead (downloading, or waiting for their turn).
            taken = self._inflight.get(key, 0) + len(self._turns.get(key, ()))
            # Slots, and as many taken ahead to download while the slots are busy.
            free[v.name] = 2 * bound - taken - over
        return free

    def _wake_turns(self, key: tuple[str, str]) -> None:
        event = self._slot_freed.get(key)
        if event is not None:
            event.set()
        if not self._turns.get(key, True):
            del self._turns[key]

    def _bound(self, endpoint: str, variant: str) -> int:
        """The slots of a variant now (0 while its endpoint is not served)."""
        route = self._router.route(endpoint)
        if route is None or route.async_inference is None:
            return 0
        found = route.by_name.get(variant)
        per_instance = route.async_inference.max_concurrent_per_instance
        return 0 if found is None else per_instance * len(found.replicas)

    async def _acquire(self, key: tuple[str, str], seq: int) -> None:
        """Wait for a slot of the variant and for this request's turn (requests run in the
        order they left the queue, whichever input arrived first), then hold the slot.
        Waiters are woken together and checked on the loop, so none takes a slot not free."""
        turns = self._turns[key]
        while turns[0] != seq or self._inflight.get(key, 0) >= max(self._bound(*key), 1):
            event = self._slot_freed.setdefault(key, asyncio.Event())
            event.clear()
            await event.wait()
        turns.popleft()
        self._wake_turns(key)
        self._inflight[key] = self._inflight.get(key, 0) + 1

    async def _start(self, route: EndpointRoute, now: float) -> None:
        free = self._free(route)
        total = sum(max(n, 0) for n in free.values())
        if total <= 0:
            return
        # One dispatch at a time, so requests start in the order they were taken.
        for request in await self._blocking(self._queue.take, route.name, total, now):
            variant = max(free, key=lambda name: free[name])
            free[variant] -= 1
            key = (route.name, variant)
            self._turns.setdefault(key, collections.deque()).append(request.seq)
            task = asyncio.get_running_loop().create_task(self._serve(request, variant))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _expire_waiting(self, endpoint: str, now: float) -> None:
        """An endpoint not serving keeps its requests waiting, but not past their TTL."""
        for request in await self._blocking(self._queue.take, endpoint, 100, now):
            if now >= request.expires:
                await self._fail(request, self._expired(request), self._role(endpoint, None))
                self._finished(request, None, ok=False, started=None)
            else:
                await self._blocking(self._queue.retry_later, request.seq, now + RETRY_AFTER_S)

    @staticmethod
    def _expired(request: AsyncRequest) -> str:
        ttl = request.expires - request.received
        return (
            f"Request expired: it waited in the queue longer than its RequestTTLSeconds "
            f"({ttl:g} seconds) without an instance to run it."
        )

    def _role(self, endpoint: str, variant: str | None) -> str | None:
        """The ExecutionRoleArn of the model `variant` serves (the endpoint's first variant's
        for None), or the one last seen while the endpoint is not served (event loop)."""
        if self._serving is not None:
            for spec in self._serving():
                if spec.endpoint_name != endpoint or not spec.variants:
                    continue
                chosen = next(
                    (v for v in spec.variants if v.variant_name == variant), spec.variants[0]
                )
                self._last_role[endpoint] = chosen.execution_role_arn
                return chosen.execution_role_arn
        return self._last_role.get(endpoint)

    def _finished(
        self, request: AsyncRequest, variant: str | None, *, ok: bool, started: float | None
    ) -> None:
        """Count a request that ended: `started` when it left the queue to run (None: it
        expired there), its total time until now, when its answer is written and notified."""
        now = self._clock()
        self.series.finished(
            request.endpoint,
            variant,
            ok=ok,
            backlog_ms=None if started is None else (started - request.received) * 1000.0,
            total_ms=(now - request.received) * 1000.0,
        )

    async def _serve(self, request: AsyncRequest, variant: str) -> None:
        started = self._clock()
        role = self._role(request.endpoint, variant)
        key = (request.endpoint, variant)
        released = False
        holding = False

        async def acquire() -> None:
            nonlocal holding
            await self._acquire(key, request.seq)
            holding = True

        def release() -> None:
            """The container is done with it: its slot is free, it is finishing. (One that
            never got a slot only stops counting as taken ahead.)"""
            nonlocal released
            if released:
                return
            released = True
            if holding:
                self._inflight[key] -= 1
                if not self._inflight[key]:
                    del self._inflight[key]
                self._wake_turns(key)
            else:
                turns = self._turns.get(key)
                if turns is not None and request.seq in turns:
                    turns.remove(request.seq)  # its turn passes to the next
                self._wake_turns(key)
            self._finishing[key] = self._finishing.get(key, 0) + 1
            self._wake.set()

        outcome: bool | None = None
        try:
            outcome = await self._serve_one(request, variant, role, acquire, release)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("asynchronous request %s failed", request.inference_id)
            await self._fail(request, "An internal error occurred; see the server log.", role)
            outcome = False
        finally:
            release()
            self._finishing[key] -= 1
            if not self._finishing[key]:
                del self._finishing[key]
            self._wake.set()
        if outcome is not None:
            self._finished(request, variant, ok=outcome, started=started)

    async def _serve_one(
        self,
        request: AsyncRequest,
        variant: str,
        role: str | None,
        acquire: Callable[[], Awaitable[None]],
        release: Callable[[], None],
    ) -> bool | None:
        """Run one request: True once answered, False once failed, None when it went back to
        the queue or had been answered before a restart (neither counts as finishing now).
        `acquire` takes a slot of the variant once the input is here; `release` gives it back
        once the container is done with it."""
        if self._clock() >= request.expires:
            await self._fail(request, self._expired(request), role)
            return False
        if request.recovered and await self._already_written(request, role):
            return None
        try:
            body = await self._blocking(
                self._outputs.read_input,
                request.input_location,
                self._work,
                self._max_input,
                self._io_timeout,
                self._policy,
                role,
            )
        except ArtifactError as error:
            await self._fail(request, f"Could not read InputLocation: {error.message}", role)
            return False
        await acquire()
        invoke = InvokeRequest(
            body=body,
            content_type=_bytes(request.content_type),
            accept=_bytes(request.accept),
            custom_attributes=_bytes(request.custom_attributes),
            target_variant=variant,
            inference_id=request.inference_id.encode(),
            # InvocationTimeoutSeconds bounds the container call, not the server's default.
            timeout_s=request.timeout_s,
        )
        try:
            try:
                result = await asyncio.wait_for(
                    self._router.invoke(request.endpoint, invoke, queued=True), request.timeout_s
                )
            finally:
                release()
        except TimeoutError:
            await self._fail(
                request,
                f"ModelInvocationTimeExceeded: the model did not answer within "
                f"InvocationTimeoutSeconds ({request.timeout_s:g} seconds).",
                role,
            )
            return False
        except ServiceUnavailable as error:
            if self._clock() + RETRY_AFTER_S < request.expires:
                log.info("asynchronous request %s waits: %s", request.inference_id, error.message)
                await self._blocking(
                    self._queue.retry_later, request.seq, self._clock() + RETRY_AFTER_S
                )
                return None
            await self._fail(request, f"{error.code}: {error.message}", role)
            return False
        except ServiceError as error:
            await self._fail(request, f"{error.code}: {error.message}", role)
            return False
        content_type = result.content_type.decode("latin-1")
        try:
            await self._blocking(
                self._outputs.put, request.output_location, result.body, content_type, role
            )
        except OutputFailed as error:
            await self._fail(request, f"The answer could not be written: {error}", role)
            return False
        await self._blocking(self._queue.finish, request.seq, True)
        await self._notify(request, role, ok=True, content_type=content_type, body=result.body)
        return True

    async def _already_written(self, request: AsyncRequest, role: str | None) -> bool:
        """A request a crash cut short: finished already when its answer (or failure) is in S3,
        since its inference id names the object."""
        try:
            if await self._blocking(self._outputs.exists, request.output_location, role):
                await self._blocking(self._queue.finish, request.seq, True)
                return True
            if await self._blocking(self._outputs.exists, request.failure_location, role):
                await self._blocking(
                    self._queue.finish, request.seq, False, "failed before a restart"
                )
                return True
        except OutputFailed as error:
            log.warning("asynchronous request %s: %s", request.inference_id, error)
        return False

    async def _fail(self, request: AsyncRequest, reason: str, role: str | None) -> None:
        """Write the failure object (the reason, as text) and record the failure."""
        try:
            await self._blocking(
                self._outputs.put,
                request.failure_location,
                reason.encode(),
                "text/plain; charset=utf-8",
                role,
            )
        except OutputFailed as error:
            log.warning("asynchronous request %s: %s", request.inference_id, error)
        await self._blocking(self._queue.finish, request.seq, False, reason)
        await self._notify(
            request,
            role,
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
        role: str | None,
        *,
        ok: bool,
        content_type: str,
        body: bytes,
        reason: str | None = None,
    ) -> None:
        await self._blocking(
            self.notifier.finished,
            self._config(request.endpoint),
            request,
            self._clock(),
            ok=ok,
            content_type=content_type,
            body=body,
            reason=reason,
            role=role,
        )


def _bytes(value: str | None) -> bytes | None:
    return None if value is None else value.encode("latin-1")
