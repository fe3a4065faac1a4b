"""What every handle of a container on the server's machine keeps: the process and Docker backends.

Both start a container from a `LaunchSpec` and have a thread copy its output into its log file
(the process backend's pipe pump, the Docker backend's log stream), so both answer the same
questions the same way:
- its id and address are the spec's, its limits the account the backend made at its start;
- an exit is reported only once the container's last output is in its log (so a FailureReason
  quotes it), or a grace after the exit at the latest (something may hold the output open);
- a stop runs once: a second caller waits for the first stop to finish, and the backend is told
  when it has (`on_stopped`), so it stops counting the container as live;
- a stop returns once the output is on disk, or gives up on it after a bound, with a warning.

How a container is stopped, and how its exit and stats are read, stays each backend's own.
`LiveContainers` is the backends' side of that bookkeeping: which handles still run, by id.
A container on another machine (Ray) is observed through its node's agent instead and keeps
none of this (`ray/container.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import ClassVar, Generic, Protocol, Self, TypeVar

from polyhost.backends.base import LaunchSpec


class OutputCopier(Protocol):
    """The thread that copies a container's output into its log file."""

    @property
    def done(self) -> bool:
        """True once the output ended (or `stop` was called) and the log file is closed."""
        ...

    def stop(self) -> None:
        """End the copy now, even if the container's output is still open."""
        ...


class LocalContainer:
    """The shared part of a handle of a container on this machine; see the module docstring.

    A subclass sets the class variables (its bounds, its logger and what its warning says),
    implements `_terminate` (the stop itself, which calls `_finish_output` when the container
    is gone) and `_output_logged`, and reports its exit code through `_reported`."""

    # How long after the exit an exit code is reported even if the output is not all logged.
    output_grace_s: ClassVar[float]
    # How long a stop waits for the output copy to end once the container is gone.
    output_wait_s: ClassVar[float]
    output_poll_s: ClassVar[float]
    # The warning when the copy did not end within `output_wait_s` (after the container's id).
    output_stuck: ClassVar[str]
    logger: ClassVar[logging.Logger]

    def __init__(
        self,
        spec: LaunchSpec,
        limits_applied: str,
        output: OutputCopier,
        on_stopped: Callable[[Self], None] | None,
    ) -> None:
        self._spec = spec
        self._limits_applied = limits_applied
        self._output = output
        self._on_stopped = on_stopped
        self._stopping: asyncio.Event | None = None

    @property
    def container_id(self) -> str:
        return self._spec.container_id

    @property
    def host(self) -> str:
        return self._spec.host

    @property
    def port(self) -> int:
        return self._spec.port

    @property
    def limits_applied(self) -> str:
        return self._limits_applied

    @property
    def stopped(self) -> bool:
        """True once stop() has finished: nothing of the container runs any more."""
        return self._stopping is not None and self._stopping.is_set()

    def _output_logged(self) -> bool:
        """Whether everything the container wrote so far is in its log file."""
        raise NotImplementedError

    def _reported(self, code: int, exited_at: float) -> int | None:
        """`code` once the container's last output is in its log (or the grace passed)."""
        if (
            self.stopped
            or self._output_logged()
            or time.monotonic() - exited_at >= self.output_grace_s
        ):
            return code
        return None

    async def stop(self: Self, grace_s: float) -> None:
        """Stop the container (`_terminate`); safe to call again, and from several tasks."""
        if self._stopping is not None:
            await self._stopping.wait()
            return
        self._stopping = asyncio.Event()
        try:
            await self._terminate(grace_s)
        finally:
            self._stopping.set()
            if self._on_stopped is not None:
                self._on_stopped(self)

    async def _terminate(self, grace_s: float) -> None:
        raise NotImplementedError

    async def retire(self, stop_grace_s: float) -> None:
        """Before the container starts again: stop what is left of this run, gracefully while
        it still runs, at once when only its remains are (what its dead main process left)."""
        running = self.exit_code() is None
        await self.stop(stop_grace_s if running else 0.0)

    def exit_code(self) -> int | None:
        raise NotImplementedError

    async def _finish_output(self) -> None:
        """Wait until the output copy ended (the container is gone); give up after a bound."""
        deadline = time.monotonic() + self.output_wait_s
        while not self._output.done and time.monotonic() < deadline:
            await asyncio.sleep(self.output_poll_s)
        if not self._output.done:
            self.logger.warning("container %s: %s", self.container_id, self.output_stuck)
            self._output.stop()


_Handle = TypeVar("_Handle", bound=LocalContainer)


class LiveContainers(Generic[_Handle]):
    """The handles a backend started and that have not stopped yet, by container id.

    A container started again (a restart) finds what is left of its previous run here, and
    the orphan reaping at start spares what this run started."""

    def __init__(self) -> None:
        self._by_id: dict[str, _Handle] = {}

    def add(self, handle: _Handle) -> None:
        self._by_id[handle.container_id] = handle

    def forget(self, handle: _Handle) -> None:
        """The handle stopped (its `on_stopped`); a newer run under the same id stays."""
        if self._by_id.get(handle.container_id) is handle:
            del self._by_id[handle.container_id]

    def previous(self, container_id: str) -> _Handle | None:
        """The container's previous run, when something of it may still be left."""
        previous = self._by_id.get(container_id)
        return None if previous is None or previous.stopped else previous

    def ids(self) -> set[str]:
        return set(self._by_id)

    def __iter__(self) -> Iterator[_Handle]:
        return iter(list(self._by_id.values()))
