"""What the server keeps of a placed instance and of each container its agent runs.

`PlacedInstance` is one instance on the cluster: its agent (a Ray actor), its placement group,
its node, and whether it was lost. `RayContainer` is the deployer's handle of one container of
it: the node's address and the port the agent chose, and the exit code, CPU and memory the
backend's poller last heard from the agent (`observe`), which also writes the log slices it
ships into the container's log file on the server. A multi-model container's models reach its
node through the handle's `model_staging` (`staging`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from polyhost.backends.base import (
    ContainerStats,
    InstanceRequest,
    LaunchSpec,
    ModelsShipped,
    NodePlaced,
)
from polyhost.backends.ray.agent import ContainerState, Started
from polyhost.backends.ray.staging import RayModelStaging
from polyhost.logs.files import RotatingLog

log = logging.getLogger("polyhost.backends.ray")


class ContainerHost(Protocol):
    """The Ray backend, as its handles see it."""

    @property
    def max_model_bytes(self) -> int: ...

    def placed(self, key: str) -> PlacedInstance | None: ...

    async def stop_container(
        self, instance: PlacedInstance, container: RayContainer, grace_s: float
    ) -> None: ...


@dataclass
class PlacedInstance:
    request: InstanceRequest
    generation: int
    agent: Any  # ray.actor.ActorHandle
    group: Any  # ray.util.placement_group.PlacementGroup | None (adopted without its group)
    node_ip: str
    node_id: str
    adopted: bool
    lost: str | None = None
    node_lost: bool = False  # lost with its node (else only its agent died)
    containers: dict[str, RayContainer] = field(default_factory=dict)
    answered: float = field(default_factory=time.monotonic)
    stats_at: float = 0.0
    poller: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return f"{self.request.key}/g{self.generation}"


class RayContainer(NodePlaced, ModelsShipped):
    """A container run by an instance's agent on a Ray node, as the deployer sees it: a
    `NodePlaced` and `ModelsShipped` handle (declared, so the type checker holds it to those
    protocols)."""

    def __init__(
        self,
        backend: ContainerHost,
        instance: PlacedInstance,
        spec: LaunchSpec,
        started: Started,
        logfile: RotatingLog,
    ) -> None:
        self._backend = backend
        self._instance = instance
        self._spec = spec
        self._started = started
        self._log = logfile
        self._code: int | None = None
        self._listens: bool | None = None
        self._stats: ContainerStats | None = None
        self._stopped = False
        self._log_closed = False

    @property
    def container_id(self) -> str:
        return self._spec.container_id

    @property
    def host(self) -> str:
        return self._started.host

    @property
    def port(self) -> int:
        return self._started.port

    @property
    def pid(self) -> int:
        """The container's main process, on its node."""
        return self._started.pid

    @property
    def model_dir(self) -> Path | None:
        """The model folder on the server this container's model data was shipped from."""
        return self._spec.model_dir

    @property
    def adopted(self) -> bool:
        """True when the agent already ran it (a restarted server adopted it)."""
        return self._started.adopted

    @property
    def node(self) -> str:
        return self._instance.node_ip

    @property
    def node_id(self) -> str:
        return self._instance.node_id

    @property
    def limits_applied(self) -> str:
        return self._started.limits_applied

    def model_staging(self) -> RayModelStaging:
        """Where a multi-model container's models go: its node, through its instance's agent
        (whichever agent and node the instance has at each call)."""
        return RayModelStaging(
            self._backend,
            self._instance.request.key,
            self.container_id,
            self._backend.max_model_bytes,
        )

    def lost(self) -> str | None:
        """Why its instance is gone (its node or agent lost), set by the backend's poller."""
        return self._instance.lost

    def exit_code(self) -> int | None:
        return self._code

    def stats(self) -> ContainerStats | None:
        return None if self._code is not None or self._instance.lost else self._stats

    def listens_on(self, port: int) -> bool | None:
        return self._listens if port == self.port else False

    def observe(self, state: ContainerState) -> None:
        """One poll's answer from the agent."""
        if state.log:
            self.write_log(state.log)
        if self._code is None:
            self._code = state.exit_code
        self._listens = state.listens
        if state.stats is not None:
            self._stats = state.stats

    def write_log(self, data: bytes) -> None:
        if self._log_closed:
            return
        try:
            self._log.write(data)
        except OSError as error:
            log.warning("cannot write the log of container %s: %s", self.container_id, error)

    def close_log(self) -> None:
        self._log_closed = True
        with contextlib.suppress(OSError):
            self._log.close()

    async def stop(self, grace_s: float) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            await self._backend.stop_container(self._instance, self, grace_s)
        finally:
            if self._code is None:
                self._code = -15
            self.close_log()
