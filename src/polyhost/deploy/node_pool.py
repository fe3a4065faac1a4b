"""The pool of a container on another machine (Ray): a lost node is a 503 naming the node.

The router calls a remote container with the usual upstream pool; this wraps it so that a call
that fails because the container's node was lost says so, instead of blaming the container,
and so that the calls in flight when the loss is noticed end at once (`abort`, from the
supervisor) rather than at the invocation timeout. Containers on the server's machine get the
plain pool (`GroupStarter.pool_for`).
"""

from __future__ import annotations

import asyncio

from polyhost.backends.base import lost_reason
from polyhost.deploy.running import RunningContainer
from polyhost.router.upstream import (
    UpstreamConnectFailed,
    UpstreamConnectionError,
    UpstreamNodeLost,
    UpstreamPool,
    UpstreamResponse,
)

# How long a failed call to a remote container waits for the verdict on its node: a node's loss
# is seen within about a second (the backend's liveness checks).
LOST_VERDICT_S = 1.5


class NodeAwarePool:
    """The pool of a container on another machine: a call that fails because the container's
    node was lost says so (a 503 naming the node) instead of blaming the container.

    Calls in flight when the loss is noticed are ended at once (`abort`), so a request on a
    node that vanished without a word does not wait for the invocation timeout."""

    def __init__(self, pool: UpstreamPool, container: RunningContainer) -> None:
        self._pool = pool
        self._container = container
        self.max_inflight = pool.max_inflight
        self.host = pool.host
        self.port = pool.port
        self._calls: set[asyncio.Task[object]] = set()
        self._lost: str | None = None

    async def post(
        self,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout: float,
        max_response_bytes: int,
    ) -> UpstreamResponse:
        if self._lost is not None:
            raise UpstreamConnectFailed(self._lost)
        task = asyncio.current_task()
        if task is not None:
            self._calls.add(task)
        try:
            return await self._post(path, headers, body, timeout, max_response_bytes)
        except asyncio.CancelledError:
            # `abort` ended the call (here, or while it awaited the verdict): the caller gets
            # the node's loss, and the task it ran in (the connection's) carries on.
            if self._lost is None or task is None:
                raise
            task.uncancel()
            raise UpstreamNodeLost(self._lost) from None
        finally:
            if task is not None:
                self._calls.discard(task)

    async def _post(
        self,
        path: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout: float,
        max_response_bytes: int,
    ) -> UpstreamResponse:
        try:
            return await self._pool.post(path, headers, body, timeout, max_response_bytes)
        except UpstreamConnectFailed:
            # Refused: nothing reached the container, and the router may send the request to
            # another replica at once; no wait for the verdict, only its reason if known.
            handle = self._container.handle
            reason = lost_reason(handle) if handle is not None else None
            if reason is None:
                raise
            raise UpstreamConnectFailed(reason) from None
        except UpstreamConnectionError:
            # Cut in flight: a lost node says so (within LOST_VERDICT_S) in the 503; the
            # request may have reached the container, so it is not sent to another replica.
            reason = await self._verdict()
            if reason is None:
                raise
            raise UpstreamNodeLost(reason) from None

    async def _verdict(self) -> str | None:
        """Why the node is gone, if it turns out to be within LOST_VERDICT_S."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOST_VERDICT_S
        while True:
            handle = self._container.handle
            reason = lost_reason(handle) if handle is not None else None
            if reason is not None or loop.time() >= deadline:
                return reason
            await asyncio.sleep(0.05)

    def abort(self, reason: str) -> None:
        """End the calls in flight: the container's node is lost (`reason` names it)."""
        self._lost = reason
        for task in list(self._calls):
            task.cancel()

    def close(self) -> None:
        self._pool.close()
