"""A serverless variant's gate (docs/serverless.md): MaxConcurrency and the cold start.

A variant with ServerlessConfig runs no container until a request comes. Every request to it
passes its gate: beyond MaxConcurrency in flight it is throttled (ThrottlingException, HTTP
400, AWS's common error); when the variant has no instance the request waits for one start,
shared by every request that came meanwhile (the deployer's, bounded by the startup timeout).
The deployer reads `in_flight` and `last_used` to stop the container after
`--serverless-idle-s` seconds without a request. Everything here runs on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from polyhost.errors import ThrottlingException

# Starts the variant's one instance and publishes its route; raises a ServiceError if it
# cannot (the deployer's).
Warm = Callable[[], Awaitable[None]]


@dataclass(eq=False)
class ServerlessGate:
    endpoint_name: str
    variant_name: str
    max_concurrency: int
    warm: Warm
    provisioned: bool = False  # ProvisionedConcurrency: one instance is kept warm always
    in_flight: int = 0
    last_used: float = field(default_factory=lambda: asyncio.get_running_loop().time())
    cold_starts: int = 0
    throttled: int = 0  # requests refused past MaxConcurrency (the dashboard shows them)
    _starting: asyncio.Task[None] | None = None

    def enter(self) -> None:
        """Count a request in, or refuse it past MaxConcurrency."""
        if self.in_flight >= self.max_concurrency:
            self.throttled += 1
            raise ThrottlingException(
                f"Endpoint {self.endpoint_name}'s serverless variant {self.variant_name} has "
                f"{self.in_flight} invocations in flight, its MaxConcurrency "
                f"({self.max_concurrency}): retry later, or raise MaxConcurrency in the "
                "variant's ServerlessConfig."
            )
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        self.last_used = asyncio.get_running_loop().time()

    @property
    def starting(self) -> bool:
        return self._starting is not None and not self._starting.done()

    async def cold_start(self) -> None:
        """Wait for the variant's instance to start; concurrent callers share one start."""
        task = self._starting
        if task is None or task.done():
            self.cold_starts += 1
            task = self._starting = asyncio.get_running_loop().create_task(self._run())
        # Shielded: a caller that goes away does not cancel the start the others wait for.
        await asyncio.shield(task)

    async def _run(self) -> None:
        try:
            await self.warm()
        finally:
            self.last_used = asyncio.get_running_loop().time()
