"""What runs for one endpoint revision: its containers, their instances, and its routes.

The state the starter fills in, the supervisor keeps alive and the deployer publishes: one
`RunningGroup` per revision, one `RunningContainer` per container of every instance of every
variant, and, for a backend that places instances (`InstancePlacer`, Ray), one `PlannedInstance`
per instance. The group also knows which instances are out of routing because their node was
lost (`withdrawn`), so the route the router gets (`serving_route`) and CurrentInstanceCount
(`serving_instances`) leave them out until they are back.

Plain state, no I/O: it is read on every metrics scrape (`samples.py`) and every republish.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from polyhost.backends.base import (
    ContainerHandle,
    ContainerUser,
    InstanceNetwork,
    InstanceRequest,
    LaunchSpec,
    node_of,
)
from polyhost.control.seam import ContainerSpec, EndpointSpec, VariantSpec
from polyhost.logs.streams import LogStream
from polyhost.router.table import ContainerRoute, EndpointRoute, VariantRoute, variant_over

SETUPS_KEPT = 8  # starts remembered for ModelSetupTime; the recorder reads them every 10 s


@dataclass
class RunningContainer:
    """One container of one instance: what was asked, how it was launched, and how it runs."""

    spec: ContainerSpec
    variant: VariantSpec
    launch: LaunchSpec
    stream: LogStream
    startup_timeout_s: float
    handle: ContainerHandle | None = None
    route: ContainerRoute | None = None
    restarts: int = 0
    # (start number, seconds from launch to the first passed /ping), the latest few starts.
    setups: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=SETUPS_KEPT))
    starts: int = 0
    supervisor: asyncio.Task[None] | None = None  # what keeps it alive once it serves
    # Why the router asked for a restart (a MultiModel load that hung): the supervisor's watch
    # takes it as trouble, as it takes failed health checks.
    restart_reason: str | None = None

    def request_restart(self, reason: str) -> None:
        """Ask the supervisor to restart it (on the event loop; the first reason is kept)."""
        if self.restart_reason is None:
            self.restart_reason = reason

    def record_setup(self, seconds: float) -> None:
        """A start (deploy or restart) passed its first /ping `seconds` after launch."""
        self.starts += 1
        self.setups.append((self.starts, seconds))

    @property
    def node(self) -> str | None:
        """The node the container runs on when that is another machine (Ray), else None."""
        return node_of(self.handle) if self.handle is not None else None

    @property
    def instance(self) -> tuple[str, str]:
        """(variant name, instance id): the instance this container is part of."""
        return self.variant.variant_name, self.stream.instance_id


@dataclass
class PlannedInstance:
    """An instance of a backend that places instances: what was asked, and where it went."""

    request: InstanceRequest
    variant_name: str
    instance_id: str
    node: str | None = None
    placed: bool = False


@dataclass
class RunningGroup:
    """Every container of one endpoint revision, and what of it is routed to."""

    spec: EndpointSpec
    containers: list[RunningContainer] = field(default_factory=list)
    route: EndpointRoute | None = None
    stopping: bool = False
    supervisors: list[asyncio.Task[None]] = field(default_factory=list)
    instances: dict[str, PlannedInstance] = field(default_factory=dict)
    # Instances (variant, instance id) taken out of routing because their node was lost.
    withdrawn: set[tuple[str, str]] = field(default_factory=set)
    # Called when `withdrawn` changes (the deployer republishes the route and the counts).
    on_change: Callable[[], None] | None = None
    # What isolates its instances (`confinement.py`), let go of once its containers stopped.
    networks: list[InstanceNetwork] = field(default_factory=list)
    users: list[ContainerUser] = field(default_factory=list)
    # The revision its folders are named by: the first spec's, kept when the group is resized
    # in place to a later revision (an inference component's new copy count).
    folder_revision: int = -1

    def __post_init__(self) -> None:
        if self.folder_revision < 0:
            self.folder_revision = self.spec.revision

    def log_streams(self) -> list[LogStream]:
        return [c.stream for c in self.containers]

    def withdraw(self, instance: tuple[str, str]) -> None:
        if instance not in self.withdrawn:
            self.withdrawn.add(instance)
            self._changed()

    def restore(self, instance: tuple[str, str]) -> None:
        """Route to the instance again once every container of it is available."""
        if instance not in self.withdrawn:
            return
        members = [c for c in self.containers if c.instance == instance]
        if all(c.route is not None and c.route.available for c in members):
            self.withdrawn.discard(instance)
            self._changed()

    def _changed(self) -> None:
        if self.on_change is not None and not self.stopping:
            self.on_change()

    def serving_route(self) -> EndpointRoute | None:
        """The route without withdrawn instances (a variant keeps them all if none is left)."""
        route = self.route
        if route is None or not self.withdrawn:
            return route
        variants: list[VariantRoute] = []
        for variant in route.variants:
            kept = tuple(
                r for r in variant.replicas if (variant.name, r.instance_id) not in self.withdrawn
            )
            variants.append(variant_over(variant, kept or variant.replicas))
        return route.with_variants(tuple(variants))

    def serving_instances(self, variant_name: str) -> int:
        """Instances of the variant in routing now (for CurrentInstanceCount)."""
        count = next(v.instance_count for v in self.spec.variants if v.variant_name == variant_name)
        return count - sum(1 for v, _ in self.withdrawn if v == variant_name)

    def nodes(self) -> dict[tuple[str, str], str]:
        """(variant, instance id) → node, for instances placed on other machines."""
        found: dict[tuple[str, str], str] = {}
        for container in self.containers:
            node = container.node
            if node is not None:
                found.setdefault(container.instance, node)
        return found
