"""InvokeEndpoint semantics: pick variant and replica, route Direct or Serial, map failures.

Everything here runs on the event loop and reads only the in-memory table; bodies pass through
as bytes, never parsed (docs/architecture.md, principle 4). Failures become the runtime errors of
docs/contract.md with messages that name the container and say where its log is.

`invoke` is a coroutine that serves every request. `begin` is the fast lane of the common case
(one container answers: Direct, or a one-container Serial endpoint, and that container's pool
has an idle kept-alive connection): it sends the request at once and the answer comes back
through a callback (`_Call`), so no task, future or coroutine frame is made per request. Both
keep the same counters and latency series and raise the same errors; whatever `begin` cannot
finish that way it declines (returns False) before sending anything, and the caller awaits
`invoke` instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

from polyhost.errors import (
    InternalFailure,
    InvokeValidationError,
    ModelError,
    ModelNotReadyException,
    ServiceError,
    ServiceUnavailable,
)
from polyhost.naming import component_key, log_group, log_group_arn
from polyhost.router.multi_model import call_model, invoke_multi_model, require_target
from polyhost.router.serverless import ServerlessGate, Warm
from polyhost.router.shadow import ShadowMirror
from polyhost.router.table import ContainerRoute, EndpointRoute, ReplicaRoute, VariantRoute
from polyhost.router.upstream import (
    UpstreamConnectFailed,
    UpstreamError,
    UpstreamHeadTooLarge,
    UpstreamNodeLost,
    UpstreamPool,
    UpstreamResponse,
    UpstreamResponseTooLarge,
    UpstreamSaturated,
    UpstreamTimeout,
)
from polyhost.router.warm_models import begin_warm
from polyhost.settings import Settings

_INVOCATIONS = b"/invocations"
# SageMaker's own words for an invocation of a components endpoint that names no component.
COMPONENT_HEADER_REQUIRED = (
    "Inference Component Name header is required for endpoints to which you plan to deploy "
    "inference components. Please include Inference Component Name header or consider using "
    "SageMaker models."
)
_MAX_ORIGINAL_MESSAGE = 4096
RESTORING = "Restoring"

log = logging.getLogger("polyhost.router")
_INTERNAL = "An internal error occurred; see the server log."  # http/errors.py's answer


class ConnectionRefused(ServiceUnavailable):
    """A container refused the connection before any container saw the request: the same
    retryable 503 for the caller, and safe for the router to send to another replica."""


@dataclass(frozen=True, slots=True)
class InvokeRequest:
    body: bytes
    content_type: bytes | None = None
    accept: bytes | None = None
    custom_attributes: bytes | None = None
    target_variant: str | None = None
    target_container: str | None = None
    target_model: str | None = None
    inference_id: bytes | None = None
    inference_component: str | None = None
    # The most one container call may take (an asynchronous request's InvocationTimeoutSeconds);
    # None: the server's --invocation-timeout.
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class InvokeResult:
    body: bytes
    content_type: bytes
    variant: str
    custom_attributes: bytes | None


# What `Router.begin` calls once with the outcome: (token, result, None) or (token, None, error).
Done = Callable[[object, InvokeResult | None, ServiceError | None], None]


class Router:
    """Holds the routing table and serves invocations from it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._timeout = settings.invocation_timeout_s
        self._max_body = settings.max_body_bytes
        self._max_interchange = settings.max_interchange_bytes
        self._routes: dict[str, EndpointRoute] = {}
        self._not_serving: dict[str, str] = {}
        self.shadows = ShadowMirror(self)
        # Serverless variants' gates (`router.serverless`), by endpoint then variant; an
        # endpoint with one takes the coroutine path.
        self._gates: dict[str, dict[str, ServerlessGate]] = {}

    # -- table maintenance (deployer) -------------------------------------------------------
    def publish(self, route: EndpointRoute) -> None:
        """Make `route` the one serving its endpoint; replaces any previous one atomically."""
        routes = dict(self._routes)
        routes[route.name] = route
        self._routes = routes
        self._not_serving.pop(route.name, None)

    def withdraw(self, endpoint_name: str, status: str | None = None) -> None:
        """Stop routing to the endpoint; `status` (e.g. "Creating") explains it to callers."""
        routes = dict(self._routes)
        routes.pop(endpoint_name, None)
        self._routes = routes
        if status is None:
            self._not_serving.pop(endpoint_name, None)
        else:
            self._not_serving[endpoint_name] = status

    def mark_not_serving(self, endpoint_name: str, status: str) -> None:
        if endpoint_name not in self._routes:
            self._not_serving[endpoint_name] = status

    def mark_restoring(self, endpoint_name: str) -> None:
        """After a server restart, until its containers are back: callers get a retryable 503."""
        self.mark_not_serving(endpoint_name, RESTORING)

    def is_restoring(self, endpoint_name: str) -> bool:
        return self._not_serving.get(endpoint_name) == RESTORING

    def route(self, endpoint_name: str) -> EndpointRoute | None:
        return self._routes.get(endpoint_name)

    # -- serverless variants (deployer) -----------------------------------------------------
    def bind_serverless(
        self, endpoint_name: str, variants: dict[str, tuple[int, bool, Warm]]
    ) -> None:
        """The serverless variants of the revision serving `endpoint_name` now: name →
        (MaxConcurrency, provisioned, how to start its instance). A gate kept from before
        keeps its requests in flight; an empty map removes them all."""
        old = self._gates.get(endpoint_name, {})
        gates: dict[str, ServerlessGate] = {}
        for name, (limit, provisioned, warm) in variants.items():
            gate = old.get(name) or ServerlessGate(endpoint_name, name, limit, warm)
            gate.max_concurrency, gate.provisioned, gate.warm = limit, provisioned, warm
            gates[name] = gate
        table = dict(self._gates)
        if gates:
            table[endpoint_name] = gates
        else:
            table.pop(endpoint_name, None)
        self._gates = table

    def serverless_gates(self, endpoint_name: str) -> dict[str, ServerlessGate]:
        return self._gates.get(endpoint_name, {})

    def gate(self, route: EndpointRoute, variant: VariantRoute) -> ServerlessGate | None:
        gates = self._gates.get(route.name)
        return None if gates is None else gates.get(variant.name)

    async def warmed(
        self, route: EndpointRoute, variant: VariantRoute, gate: ServerlessGate
    ) -> tuple[EndpointRoute, VariantRoute]:
        """`variant` with an instance to serve: when it has none (cold), after the start
        (shared with every request waiting for it), from the route published then."""
        if variant.replicas:
            return route, variant
        await gate.cold_start()
        found = self._routes.get(route.name)
        again = None if found is None else found.by_name.get(variant.name)
        if found is None or again is None or not again.replicas:
            raise ServiceUnavailable(
                f"Endpoint {route.name}'s serverless variant {variant.name} has no instance "
                "to serve this request (it is being updated or deleted). Retry shortly."
            )
        return found, again

    def no_capacity_failures(self) -> list[tuple[str, int]]:
        """(component name, invocations that found it without a copy) of every component
        routed now (NoCapacityInvocationFailures)."""
        return [
            (route.component_name, route.no_capacity_failures)
            for route in self._routes.values()
            if route.component_name is not None
        ]

    # -- the hot path -----------------------------------------------------------------------
    def begin(self, endpoint_name: str, request: InvokeRequest, done: Done, token: object) -> bool:
        """Start `request`; `done(token, result, error)` is called once with its outcome (never
        from inside this call). On the fast lane the call is sent at once; a request the lane
        cannot take once its replica is picked (no idle connection, a pipeline, a pool of
        another kind) goes on in a task, from that same replica, so the round-robin stays as
        `invoke`'s. False: the endpoint is not routable as named (nothing counted): await
        `invoke` for its error. Raises what `invoke` would raise for a request refused before
        any container call (the variant named does not exist, saturation)."""
        started = time.perf_counter()
        route = self._routes.get(endpoint_name)
        if route is None:
            return False
        if route.multi_model:
            return begin_warm(self, route, request, done, token, started)
        if request.target_model is not None or route.coroutine_only:
            return False
        if self._gates and route.name in self._gates:
            return False  # a serverless variant's gate: the coroutine path
        if route.for_components or request.inference_component is not None:
            route = self._component_route(route, request.inference_component)
            if route.coroutine_only:
                return False
        variant = self._variant(route, request.target_variant)
        if route.shadows:
            self.shadows.mirror(route, request)
        return self._begin_on(route, variant, request, done, token, started)

    def _begin_on(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        request: InvokeRequest,
        done: Done,
        token: object,
        started: float,
    ) -> bool:
        """`begin` on `variant`: sent at once on the fast lane, else in a task; True."""
        hostname = request.target_container
        replica = variant.pick_replica(hostname)
        if variant.mode == "Direct":
            found = None if hostname is None else replica.by_hostname.get(hostname)
        else:
            containers = replica.containers
            found = containers[0] if hostname is None and len(containers) == 1 else None
        if found is None or not found.available or type(found.pool) is not UpstreamPool:
            self._later(route, variant, replica, request, done, token)
            return True
        container = found
        pool = found.pool
        headers = self._headers(request, request.content_type, request.accept)
        call = _Call(self, route, variant, replica, container, request, done, token, started)
        try:
            started = pool.start(
                _INVOCATIONS, headers, request.body, self._timeout, self._max_body, call
            )
        except UpstreamError as error:  # saturated: counted and answered as `_call` does
            counters = container.counters
            counters.invocations += 1
            counters.errors_5xx += 1
            raise self._upstream_failure(error, route, container, self._max_body) from None
        if not started:
            self._later(route, variant, replica, request, done, token)
            return True
        container.counters.invocations += 1
        replica.outstanding += 1
        return True

    def _later(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        replica: ReplicaRoute,
        request: InvokeRequest,
        done: Done,
        token: object,
    ) -> None:
        asyncio.get_running_loop().create_task(
            _finish(self._invoke_on(route, variant, replica, request), done, token, route.name)
        )

    async def invoke(
        self, endpoint_name: str, request: InvokeRequest, queued: bool = False
    ) -> InvokeResult:
        """`queued`: the call comes from the asynchronous queue, the only caller an endpoint
        with AsyncInferenceConfig takes."""
        route = self._routes.get(endpoint_name)
        if route is None:
            raise self._missing(endpoint_name)
        if route.async_inference is not None and not queued:
            raise self._async_only(route)
        if route.for_components or request.inference_component is not None:
            route = self._component_route(route, request.inference_component)
        if route.multi_model:
            return await invoke_multi_model(self, route, request)
        if request.target_model is not None:
            raise InvokeValidationError(
                f"Endpoint {endpoint_name} is not a multi-model endpoint: remove TargetModel."
            )
        variant = self._variant(route, request.target_variant)
        gate = self.gate(route, variant) if self._gates else None
        if gate is not None:
            gate.enter()
            try:
                route, variant = await self.warmed(route, variant, gate)
                if route.shadows:
                    self.shadows.mirror(route, request)
                replica = variant.pick_replica(request.target_container)
                return await self._invoke_on(route, variant, replica, request)
            finally:
                gate.leave()
        if route.shadows:
            self.shadows.mirror(route, request)
        replica = variant.pick_replica(request.target_container)
        return await self._invoke_on(route, variant, replica, request)

    async def _invoke_on(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        replica: ReplicaRoute,
        request: InvokeRequest,
    ) -> InvokeResult:
        """`invoke` from the replica picked on: a refused connection goes once elsewhere."""
        try:
            return await self._on_replica(route, variant, replica, request)
        except ConnectionRefused:
            # Nothing reached any container: the request is sent once more, to another
            # replica that can serve it, if there is one (a node just lost, a container just
            # crashed, before its supervisor withdrew it).
            other = variant.pick_replica(request.target_container, avoid=replica)
            if other is replica:
                raise
            return await self._on_replica(route, variant, other, request)

    async def _on_replica(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        replica: ReplicaRoute,
        request: InvokeRequest,
    ) -> InvokeResult:
        replica.outstanding += 1
        try:
            if variant.mode == "Direct":
                return await self._direct(route, variant, replica, request)
            return await self._serial(route, variant, replica, request)
        finally:
            replica.outstanding -= 1

    def _missing(self, endpoint_name: str) -> InvokeValidationError | ServiceUnavailable:
        status = self._not_serving.get(endpoint_name)
        if status == RESTORING:
            return ServiceUnavailable(
                f"Endpoint {endpoint_name} is being restored after a server restart; its "
                "containers are starting. Retry shortly."
            )
        if status is not None:
            return InvokeValidationError(
                f"Endpoint {endpoint_name} of account {self._settings.account_id} is not in "
                f"service: its status is {status}. Invoke it once DescribeEndpoint reports "
                "InService."
            )
        return InvokeValidationError(
            f"Endpoint {endpoint_name} of account {self._settings.account_id} not found."
        )

    def _component_route(self, route: EndpointRoute, component: str | None) -> EndpointRoute:
        """The route of the inference component a request names on `route`'s endpoint, with
        a copy to serve it; raises SageMaker's error for a request that names none, names one
        of another endpoint, or names one without copies."""
        if not route.for_components:
            raise InvokeValidationError(
                f"Endpoint {route.name} does not host inference components: remove the "
                "InferenceComponentName (X-Amzn-SageMaker-Inference-Component) header."
            )
        if component is None:
            raise InvokeValidationError(COMPONENT_HEADER_REQUIRED)
        key = component_key(component)
        found = self._routes.get(key)
        if found is None or found.component_of != route.name:
            status = self._not_serving.get(key)
            if status == RESTORING:
                raise ServiceUnavailable(
                    f"Inference component {component} is being restored after a server "
                    "restart; its copies are starting. Retry shortly."
                )
            if status is not None and found is None:
                raise InvokeValidationError(
                    f"Inference component {component} is not in service: its status is "
                    f"{status}. Invoke it once DescribeInferenceComponent reports InService."
                )
            raise InvokeValidationError(
                f"Inference component {component} not found on endpoint {route.name}."
            )
        if not any(v.replicas for v in found.variants):
            found.no_capacity_failures += 1
            raise ModelNotReadyException(
                f"Inference component {component} has no copy to serve this request (its copy "
                "count is 0). Raise it with UpdateInferenceComponentRuntimeConfig, or let "
                "Application Auto Scaling do so."
            )
        return found

    @staticmethod
    def _async_only(route: EndpointRoute) -> InvokeValidationError:
        return InvokeValidationError(
            f"Endpoint {route.name} is configured for asynchronous inference "
            "(AsyncInferenceConfig): invoke it with InvokeEndpointAsync."
        )

    @staticmethod
    def _variant(route: EndpointRoute, target: str | None) -> VariantRoute:
        if target is None:
            return route.pick_variant()
        variant = route.by_name.get(target)
        if variant is None:
            names = ", ".join(v.name for v in route.production)
            raise InvokeValidationError(
                f"Variant {target} not found for endpoint {route.name}: TargetVariant must be "
                f"one of [{names}]."
            )
        return variant

    async def _direct(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        replica: ReplicaRoute,
        request: InvokeRequest,
    ) -> InvokeResult:
        started = time.perf_counter()
        hostname = request.target_container
        container = None if hostname is None else replica.by_hostname.get(hostname)
        if container is None:
            raise self._no_direct_target(route, replica, hostname)
        headers = self._headers(request, request.content_type, request.accept)
        response, container_us = await self._call(
            route,
            container,
            request.body,
            headers,
            self._max_body,
            first=True,
            timeout_s=request.timeout_s,
        )
        total_us = (time.perf_counter() - started) * 1e6
        container.counters.overhead_latency.observe(max(total_us - container_us, 0.0))
        return self._result(response, variant, request.content_type)

    async def _serial(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        replica: ReplicaRoute,
        request: InvokeRequest,
    ) -> InvokeResult:
        if request.target_container is not None:
            raise self._not_direct(route)
        started = time.perf_counter()
        spent_us = 0.0
        body = request.body
        content_type = request.content_type
        containers = replica.containers
        last_index = len(containers) - 1
        response: UpstreamResponse | None = None
        for index, container in enumerate(containers):
            last = index == last_index
            headers = self._headers(request, content_type, request.accept if last else None)
            limit = self._max_body if last else self._max_interchange
            if container.multi_model is not None:  # the hop TargetModel names a model of
                target = require_target(route.name, request.target_model)
                response, container_us = await call_model(
                    self, route, container, target, body, headers, limit
                )
            else:
                response, container_us = await self._call(
                    route,
                    container,
                    body,
                    headers,
                    limit,
                    first=index == 0,
                    timeout_s=request.timeout_s,
                )
            spent_us += container_us
            body = response.body
            content_type = response.headers.get(b"content-type", content_type)
        assert response is not None
        total_us = (time.perf_counter() - started) * 1e6
        # A pipeline's overhead (routing plus every hop between containers) is charged to the
        # first container, which is where the request entered it.
        containers[0].counters.overhead_latency.observe(max(total_us - spent_us, 0.0))
        return self._result(response, variant, content_type)

    @staticmethod
    def _result(
        response: UpstreamResponse, variant: VariantRoute, fallback_type: bytes | None
    ) -> InvokeResult:
        return InvokeResult(
            body=response.body,
            content_type=response.headers.get(b"content-type")
            or fallback_type
            or b"application/octet-stream",
            variant=variant.name,
            custom_attributes=response.headers.get(b"x-amzn-sagemaker-custom-attributes"),
        )

    @staticmethod
    def _hostnames(replica: ReplicaRoute) -> str:
        return ", ".join(c.hostname for c in replica.containers)

    # The refusals below are built by one function each for every path that picks a container
    # (`invoke`, the fast lane's callback, the stream router), and are only ever called once
    # the request is refused, so the paths that succeed make no call more.
    @classmethod
    def _no_direct_target(
        cls, route: EndpointRoute, replica: ReplicaRoute, hostname: str | None
    ) -> InvokeValidationError:
        """A Direct endpoint's request that names no container of `replica`."""
        if hostname is None:
            return InvokeValidationError(
                f"Endpoint {route.name} uses Direct invocation mode: set "
                f"TargetContainerHostname to one of [{cls._hostnames(replica)}]."
            )
        return InvokeValidationError(
            f"No container with hostname {hostname} in endpoint {route.name}: "
            f"TargetContainerHostname must be one of [{cls._hostnames(replica)}]."
        )

    @staticmethod
    def _not_direct(route: EndpointRoute) -> InvokeValidationError:
        """A Serial endpoint's request that names a container."""
        return InvokeValidationError(
            f"Endpoint {route.name} is not in Direct invocation mode: remove "
            "TargetContainerHostname (it applies only to endpoints whose model has "
            "InferenceExecutionConfig Mode=Direct)."
        )

    @staticmethod
    def _unavailable(route: EndpointRoute, container: ContainerRoute) -> ServiceUnavailable:
        """A call to a container marked unavailable, counted as the 5xx it answers."""
        container.counters.errors_5xx += 1
        return ServiceUnavailable(
            f"Container {container.hostname} of endpoint {route.name} is unavailable: "
            f"{container.unavailable_reason}. Retry shortly."
        )

    def _call_failure(
        self,
        error: UpstreamError,
        route: EndpointRoute,
        container: ContainerRoute,
        max_response: int,
        first: bool,
        timeout_s: float | None = None,
    ) -> ServiceError:
        """A container call that got no usable answer, counted as a 5xx: a refused connection
        before any container saw the request is `ConnectionRefused`, which the caller may send
        to another replica."""
        container.counters.errors_5xx += 1
        failure = self._upstream_failure(error, route, container, max_response, timeout_s)
        if first and isinstance(error, UpstreamConnectFailed):
            return ConnectionRefused(failure.message)
        return failure

    def _model_error(
        self, route: EndpointRoute, container: ContainerRoute, response: UpstreamResponse
    ) -> ModelError:
        """The ModelError of a container's error answer, counted as a 4xx or 5xx."""
        counters = container.counters
        status = response.status
        if status >= 500:
            counters.errors_5xx += 1
            kind = "server"
        else:
            counters.errors_4xx += 1
            kind = "client"
        original = response.body[:_MAX_ORIGINAL_MESSAGE].decode("utf-8", "replace")
        return ModelError(
            f"Received {kind} error ({status}) from {container.hostname} with message "
            f'"{original}". See {self._log_hint(route, container)} for more information.',
            original_status_code=status,
            original_message=original,
            log_stream_arn=self._log_arn(route),
        )

    @staticmethod
    def _headers(
        request: InvokeRequest, content_type: bytes | None, accept: bytes | None
    ) -> list[tuple[bytes, bytes]]:
        """The headers of one container call (a pipeline's hops differ in the first two)."""
        headers: list[tuple[bytes, bytes]] = []
        if content_type is not None:
            headers.append((b"Content-Type", content_type))
        if accept is not None:
            headers.append((b"Accept", accept))
        if request.custom_attributes is not None:
            headers.append((b"X-Amzn-SageMaker-Custom-Attributes", request.custom_attributes))
        if request.inference_id is not None:
            headers.append((b"X-Amzn-SageMaker-Inference-Id", request.inference_id))
        return headers

    async def _call(
        self,
        route: EndpointRoute,
        container: ContainerRoute,
        body: bytes,
        headers: list[tuple[bytes, bytes]],
        max_response: int,
        *,
        first: bool = False,
        timeout_s: float | None = None,
    ) -> tuple[UpstreamResponse, float]:
        """One container call; returns the answer and the microseconds spent in the container.

        `first`: no container has seen the request yet, so a refused connection raises
        `ConnectionRefused`, which the caller may send to another replica."""
        counters = container.counters
        counters.invocations += 1
        if not container.available:
            raise self._unavailable(route, container)
        started = time.perf_counter()
        timeout = self._timeout if timeout_s is None else timeout_s
        try:
            response = await container.pool.post(_INVOCATIONS, headers, body, timeout, max_response)
        except UpstreamError as error:
            raise self._call_failure(
                error, route, container, max_response, first, timeout
            ) from None
        elapsed_us = (time.perf_counter() - started) * 1e6
        counters.container_latency.observe(elapsed_us)
        if response.status >= 400:
            raise self._model_error(route, container, response)
        return response, elapsed_us

    def _upstream_failure(
        self,
        error: UpstreamError,
        route: EndpointRoute,
        container: ContainerRoute,
        max_response: int,
        timeout_s: float | None = None,
    ) -> ServiceError:
        """The caller's error for a call that got no usable answer from a container.

        Unavailable (full, refusing connections) is a retryable 503; a call the container
        took but did not finish is the container's fault: ModelError, pointing at its log.
        """
        name = f"Container {container.hostname} of endpoint {route.name}"
        if isinstance(error, UpstreamSaturated):
            return ServiceUnavailable(
                f"{name} already has {container.pool.max_inflight} requests in flight, its "
                "limit. Retry shortly or add instances."
            )
        if isinstance(error, UpstreamNodeLost):
            return ServiceUnavailable(f"{name} is unavailable: {error}. Retry shortly.")
        if isinstance(error, UpstreamConnectFailed):
            return ServiceUnavailable(
                f"{name} is not accepting connections ({error}); it may be restarting. "
                "Retry shortly."
            )
        if isinstance(error, UpstreamTimeout):
            message = (
                "Your invocation timed out while waiting for a response from container "
                f"{container.hostname}. Review the latency of each container with "
                f"'polyhost logs {route.name} --container {container.hostname}' and its "
                f"metrics, resolve the issue, and try again. (Timeout: "
                f"{self._timeout if timeout_s is None else timeout_s:g} s.)"
            )
        elif isinstance(error, UpstreamResponseTooLarge):
            where = "between containers." if max_response < self._max_body else "in a response."
            message = (
                f"Container {container.hostname} returned more than {max_response} bytes, the "
                f"most allowed {where}"
            )
        elif isinstance(error, UpstreamHeadTooLarge):
            message = (
                f"Container {container.hostname} sent too big an answer head: {error}. polyhost "
                "stopped reading it and closed the connection. See "
                f"{self._log_hint(route, container)} for more information."
            )
        else:
            message = (
                f"Container {container.hostname} closed the connection without answering "
                f"({error}); it may have crashed. See {self._log_hint(route, container)} for "
                "more information."
            )
        return ModelError(message, log_stream_arn=self._log_arn(route))

    def _log_arn(self, route: EndpointRoute) -> str:
        return log_group_arn(self._settings.region, self._settings.account_id, route.name)

    @staticmethod
    def _log_hint(route: EndpointRoute, container: ContainerRoute) -> str:
        return (
            f"log stream {log_group(route.name)}/{container.log_stream} "
            f"('polyhost logs {route.name} --container {container.hostname}')"
        )


class _Call:
    """One request on `Router.begin`'s fast lane: the pool's `Reply`, which turns the
    container's answer into the router's result the way `Router._call` and `_direct` do."""

    __slots__ = (
        "_container",
        "_done",
        "_replica",
        "_request",
        "_route",
        "_router",
        "_sent",
        "_started",
        "_token",
        "_variant",
    )  # fmt: skip

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
        self._started = started  # when `begin` was called
        self._sent = time.perf_counter()  # when the container call began

    def done(self) -> bool:
        return False

    def set_result(self, response: UpstreamResponse, /) -> None:
        elapsed_us = (time.perf_counter() - self._sent) * 1e6
        self._replica.outstanding -= 1
        container = self._container
        counters = container.counters
        try:
            counters.container_latency.observe(elapsed_us)
            if response.status >= 400:
                self._done(
                    self._token, None, self._router._model_error(self._route, container, response)
                )
                return
            # The router's own time: picking the route and writing the call (`_direct`
            # measures the same span, plus the few lines that build the result).
            counters.overhead_latency.observe((self._sent - self._started) * 1e6)
            result = Router._result(response, self._variant, self._request.content_type)
        except Exception:  # never let a bug escape into the connection's parser callback
            log.exception("internal error answering %s", self._route.name)
            self._done(self._token, None, InternalFailure(_INTERNAL))
            return
        self._done(self._token, result, None)

    def set_exception(self, error: BaseException, /) -> None:
        self._replica.outstanding -= 1
        router, route, container = self._router, self._route, self._container
        container.counters.errors_5xx += 1
        if not isinstance(error, UpstreamError):
            log.error("unexpected upstream failure on %s: %r", route.name, error)
            self._done(self._token, None, InternalFailure(_INTERNAL))
            return
        failure = router._upstream_failure(error, route, container, router._max_body)
        if isinstance(error, UpstreamConnectFailed):
            # The retry on a fresh connection was refused: nothing reached any container, so,
            # as `invoke` does, the request goes once to another replica that can serve it.
            other = self._variant.pick_replica(self._request.target_container, avoid=self._replica)
            if other is not self._replica:
                call = router._on_replica(route, self._variant, other, self._request)
                asyncio.get_running_loop().create_task(
                    _finish(call, self._done, self._token, route.name)
                )
                return
        self._done(self._token, None, failure)


async def _finish(
    call: Coroutine[object, object, InvokeResult], done: Done, token: object, name: str
) -> None:
    """Await `call` and give its outcome to `done`: the fast lane's requests that need a task."""
    try:
        result = await call
    except ServiceError as error:
        done(token, None, error)
        return
    except Exception:
        log.exception("internal error invoking %s", name)
        done(token, None, InternalFailure(_INTERNAL))
        return
    done(token, result, None)
