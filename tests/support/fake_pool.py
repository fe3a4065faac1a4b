"""A scriptable stand-in for `UpstreamPool`, so the router can be tested without sockets.

The thing under test is the router (which variant, which replica, which container, what each
hop is sent, how each failure reads to the caller), not the HTTP client: the client has its own
tests against real sockets. `FakePool` has the part of `UpstreamPool` the router uses (`post`,
`max_inflight`, `close`), answers from a script, and records every call so a test can check
what each hop of a pipeline was sent.

`ContainerRoute.pool` is typed as `router.upstream.ContainerPool`, which this fake satisfies.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeAlias, cast

from polyhost.control.seam import InferenceMode
from polyhost.router.table import ContainerRoute, EndpointRoute, ReplicaRoute, VariantRoute
from polyhost.router.upstream import UpstreamResponse

Headers: TypeAlias = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class PoolCall:
    """One `post` as the router made it."""

    path: bytes
    headers: Headers
    body: bytes
    timeout: float
    max_response: int

    def header(self, name: bytes) -> bytes | None:
        """The value of header `name` (case-insensitive), None when it was not sent."""
        wanted = name.lower()
        values = [value for key, value in self.headers if key.lower() == wanted]
        assert len(values) <= 1, f"header {name!r} sent {len(values)} times"
        return values[0] if values else None

    @property
    def header_names(self) -> set[bytes]:
        return {key.lower() for key, _ in self.headers}


# What a scripted call does: answer, raise, or run (e.g. wait on an event, then answer).
Outcome: TypeAlias = (
    UpstreamResponse | BaseException | Callable[[PoolCall], Awaitable[UpstreamResponse]]
)


def answer(
    body: bytes = b"", status: int = 200, content_type: bytes | None = None, **headers: bytes
) -> UpstreamResponse:
    """A container's answer; header names as keyword arguments use `_` for `-`."""
    names = {key.replace("_", "-").lower().encode(): value for key, value in headers.items()}
    if content_type is not None:
        names[b"content-type"] = content_type
    return UpstreamResponse(status, names, body)


@dataclass
class FakePool:
    """Answers from `script` first, then with `default`; by default echoes `<name>:<body>`.

    The echo keeps the request's content type, so a pipeline of echoes shows the path a
    request took in its body ("c:b:a:x" went through a, b, then c).
    """

    name: str
    max_inflight: int = 64
    default: Outcome | None = None
    script: deque[Outcome] = field(default_factory=deque)
    calls: list[PoolCall] = field(default_factory=list)
    closed: int = 0

    def then(self, *outcomes: Outcome) -> FakePool:
        """Queue outcomes for the next calls, in order."""
        self.script.extend(outcomes)
        return self

    async def post(
        self,
        path: bytes,
        headers: Headers,
        body: bytes,
        timeout: float,
        max_response_bytes: int,
    ) -> UpstreamResponse:
        call = PoolCall(path, list(headers), body, timeout, max_response_bytes)
        self.calls.append(call)
        outcome = self.script.popleft() if self.script else self.default
        if outcome is None:
            content_type = call.header(b"content-type")
            return answer(self.name.encode() + b":" + body, content_type=content_type)
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, UpstreamResponse):
            return outcome
        return await outcome(call)

    def close(self) -> None:
        self.closed += 1


class Gate:
    """An outcome that keeps the call in flight until `open()`: a request the container holds."""

    def __init__(self, response: UpstreamResponse | None = None) -> None:
        self._event = asyncio.Event()
        self._response = response or answer(b"held")
        self.entered = 0

    async def __call__(self, call: PoolCall) -> UpstreamResponse:
        self.entered += 1
        await self._event.wait()
        return self._response

    def open(self) -> None:
        self._event.set()


def container_route(
    hostname: str,
    pool: FakePool | None = None,
    variant: str = "AllTraffic",
    instance: str = "i-0",
) -> ContainerRoute:
    """A container route served by a fake pool (named after the host unless given)."""
    return ContainerRoute(
        hostname=hostname,
        pool=pool if pool is not None else FakePool(hostname),
        log_stream=f"{variant}/{instance}/{hostname}",
    )


def fake_pool(container: ContainerRoute) -> FakePool:
    """The fake behind a route built by `container_route`."""
    pool = cast(object, container.pool)
    assert isinstance(pool, FakePool)
    return pool


def variant_route(
    name: str,
    *replicas: tuple[ContainerRoute, ...],
    weight: float = 1.0,
    mode: InferenceMode = "Serial",
) -> VariantRoute:
    """A variant whose replicas are given as tuples of container routes (i-0, i-1, ...)."""
    return VariantRoute(
        name=name,
        weight=weight,
        mode=mode,
        replicas=tuple(
            ReplicaRoute.of(f"i-{i}", containers) for i, containers in enumerate(replicas)
        ),
    )


def endpoint_route(name: str, *variants: VariantRoute) -> EndpointRoute:
    return EndpointRoute(name, tuple(variants))
