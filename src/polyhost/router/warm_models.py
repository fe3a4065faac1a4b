"""The fast lane of a multi-model invocation whose model is loaded already (warm).

Most calls of a multi-model endpoint find their model loaded: for them, `Router.begin` sends
the call from the parser's callback on an idle kept-alive connection, as it does for a
single-model endpoint, instead of awaiting `invoke_multi_model` in a task of its own (a task,
a coroutine and a future per call: the cost that made a warm TargetModel call dearer than a
single-model one). Everything else takes the coroutine path, which is where loads, evictions
and their waits live: a model not loaded (or loading), a container with ModelCacheSetting
Disabled (its model is unloaded once unused), a container that is unavailable, no idle
connection, a pool at its bound, or any request the coroutine path would refuse (its error is
raised there, once).

What the warm lane does is the coroutine path's, in the same order: the model becomes the most
recently used, the call counts as an invocation and a cache hit, the model is marked in use
until the answer (so no eviction unloads it under the call), a 4xx/5xx answer is the model's
ModelError. Two outcomes hand the call back to the coroutine path, which counts it itself: a
404 (the container lost the model, so it must be loaded again) and a connection that could
not be made (the coroutine path retries on a fresh one).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from polyhost.errors import InternalFailure, ServiceError
from polyhost.router.multi_model import (
    TARGET_MODEL_HEADER,
    MultiModelContainer,
    invocation_path,
    invoke_multi_model,
    model_answer_error,
    multi_model_container,
)
from polyhost.router.upstream import (
    UpstreamConnectFailed,
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
)

if TYPE_CHECKING:
    from polyhost.router.multi_model import _Model
    from polyhost.router.router import Done, InvokeRequest, Router
    from polyhost.router.table import ContainerRoute, EndpointRoute, ReplicaRoute, VariantRoute

log = logging.getLogger("polyhost.router")

_INTERNAL = "An internal error occurred. Retry the request; the server's log has the details."


def begin_warm(
    router: Router,
    route: EndpointRoute,
    request: InvokeRequest,
    done: Done,
    token: object,
    started: float,
) -> bool:
    """Send a warm multi-model call now; False (nothing counted, nothing sent) when it is not
    one the lane takes, for `invoke` to serve."""
    target = request.target_model
    if target is None or route.async_inference is not None or route.for_components:
        return False
    try:
        variant, replica, container = multi_model_container(route, request)
    except ServiceError:
        return False  # `invoke` raises it
    multi = container.multi_model
    if multi is None or not multi.cache or not container.available:
        return False
    if variant.mode != "Direct" and len(replica.containers) > 1:
        return False  # a pipeline: its hops are the coroutine path's
    model = multi.loaded.get(target)
    pool = container.pool
    if model is None or type(pool) is not UpstreamPool:
        return False
    headers = router._headers(request, request.content_type, request.accept)
    headers.append((TARGET_MODEL_HEADER, target.encode("utf-8")))
    call = _WarmCall(router, route, variant, replica, container, request, done, token, started)
    call.model = model
    call.multi = multi
    try:
        sent = pool.start(
            invocation_path(target), headers, request.body, router._timeout, router._max_body, call
        )
    except UpstreamError:  # saturated: the coroutine path words it
        return False
    if not sent:
        return False
    multi.loaded.move_to_end(target)
    multi.metrics.cache_hits += 1
    model.inflight += 1
    container.counters.invocations += 1
    replica.outstanding += 1
    return True


class _WarmCall:
    """The `Reply` of one warm call: the container's answer into the router's result."""

    __slots__ = (
        "_container", "_done", "_replica", "_request", "_route", "_router", "_sent",
        "_started", "_token", "_variant", "model", "multi",
    )  # fmt: skip

    model: _Model
    multi: MultiModelContainer

    def __init__(
        self,
        router: Router,
        route: EndpointRoute,
        variant: VariantRoute,
        replica: ReplicaRoute,
        container: ContainerRoute,
        request: InvokeRequest,
        done: Done,
        token: object,
        started: float,
    ) -> None:
        self._router = router
        self._route = route
        self._variant = variant
        self._replica = replica
        self._container = container
        self._request = request
        self._done = done
        self._token = token
        self._started = started
        self._sent = time.perf_counter()

    def done(self) -> bool:
        return False

    def _settle(self) -> None:
        self.model.inflight -= 1
        self._replica.outstanding -= 1

    def set_result(self, response: UpstreamResponse, /) -> None:
        self._settle()
        counters = self._container.counters
        try:
            if response.status == 404:  # the container lost the model: load it again
                target = self._request.target_model or ""
                if self.multi.loaded.get(target) is self.model:
                    self.multi.loaded.pop(target)
                    self.multi.metrics.loaded = len(self.multi.loaded)
                self._hand_back()
                return
            counters.container_latency.observe((time.perf_counter() - self._sent) * 1e6)
            if response.status >= 400:
                target = self._request.target_model or ""
                error = model_answer_error(
                    self._router, self._route, self._container, target, response
                )
                self._done(self._token, None, error)
                return
            counters.overhead_latency.observe((self._sent - self._started) * 1e6)
            result = self._router._result(response, self._variant, self._request.content_type)
        except Exception:  # never let a bug escape into the connection's parser callback
            log.exception("internal error answering %s", self._route.name)
            self._done(self._token, None, InternalFailure(_INTERNAL))
            return
        self._done(self._token, result, None)

    def set_exception(self, error: BaseException, /) -> None:
        self._settle()
        router, route, container = self._router, self._route, self._container
        if isinstance(error, UpstreamConnectFailed):
            self._hand_back()
            return
        container.counters.errors_5xx += 1
        if not isinstance(error, UpstreamError):
            log.error("unexpected upstream failure on %s: %r", route.name, error)
            self._done(self._token, None, InternalFailure(_INTERNAL))
            return
        self._done(
            self._token, None, router._upstream_failure(error, route, container, router._max_body)
        )

    def _hand_back(self) -> None:
        """Give the call to the coroutine path, which counts it again: uncount it here."""
        self._container.counters.invocations -= 1
        self.multi.metrics.cache_hits -= 1
        asyncio.get_running_loop().create_task(self._finish())

    async def _finish(self) -> None:
        try:
            result = await invoke_multi_model(self._router, self._route, self._request)
        except ServiceError as error:
            self._done(self._token, None, error)
            return
        except Exception:
            log.exception("internal error invoking %s", self._route.name)
            self._done(self._token, None, InternalFailure(_INTERNAL))
            return
        self._done(self._token, result, None)
