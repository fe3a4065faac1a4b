"""Starting and stopping one endpoint revision: every replica of every variant, all containers.

A group is all-or-nothing: it is handed to the router only once every container passed its
ping, and if any container fails the whole group is stopped and the failure says which container
and quotes the end of its log (that text becomes the endpoint's FailureReason).

A container's startup timeout is one deadline for everything its start takes. The only reason to
start it again is a port collision: a port is only known free when it is handed out, and on a
machine shared with other servers someone else may bind it before the container does. That is
told apart from a container that is merely unhealthy by who listens: a collision is a port that
is not free *and* not held by the container; a container that listens (or a port nobody
listens on) is a failing health check, and is not retried. Those bind(2) probes only mean
something on this machine: a container on another node (Ray) is judged by what its agent sees.

A backend that places instances (`InstancePlacer`, Ray) gets each instance placed before its
containers start, and released once they stopped. The routes then use the address the backend
reports for each container (its node's), and a request that fails because the container's
node was lost is answered as a 503 naming the node (`NodeAwarePool`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from polyhost.backends.base import (
    Backend,
    ContainerHandle,
    InstancePlacer,
    InstanceRequest,
    LaunchSpec,
    PlacementError,
    lost_reason,
    node_of,
)
from polyhost.control.seam import ContainerSpec, EndpointSpec, VariantSpec
from polyhost.deploy.health import PING_TIMEOUT_S, ping
from polyhost.deploy.ports import PortAllocator, port_is_held
from polyhost.logs.streams import LogStream, tail
from polyhost.modeldata.node_fetch import NodeModelFetch, fetched_on_node
from polyhost.modeldata.store import ArtifactError, ArtifactStore
from polyhost.router.table import (
    ContainerRoute,
    EndpointRoute,
    ReplicaRoute,
    VariantRoute,
)
from polyhost.router.upstream import (
    ContainerPool,
    UpstreamConnectFailed,
    UpstreamConnectionError,
    UpstreamNodeLost,
    UpstreamPool,
    UpstreamResponse,
)
from polyhost.settings import Settings

log = logging.getLogger("polyhost.deploy")

MAX_REASON = 1024
PORT_ATTEMPTS = 3
SETUPS_KEPT = 8  # starts remembered for ModelSetupTime; the recorder reads them every 10 s
# How many polls in a row must see the port held by someone else before it counts as taken
# (a container's own bind() comes a moment before its listen(), when the OS cannot tell yet).
TAKEN_POLLS = 2
# How long a failed call to a remote container waits for the verdict on its node: a node's loss
# is seen within about a second (the backend's liveness checks).
LOST_VERDICT_S = 1.5


class DeployFailure(Exception):
    """A group could not be started; `reason` is fit for FailureReason (≤ 1024 chars)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:MAX_REASON]


class PortTaken(DeployFailure):
    """Another process holds the container's port; starting again on a fresh port may help."""


@dataclass
class RunningContainer:
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
            variants.append(
                VariantRoute(variant.name, variant.weight, variant.mode, kept or variant.replicas)
            )
        return EndpointRoute(route.name, tuple(variants))

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


def failure_with_log(message: str, log_path: Path) -> DeployFailure:
    """`message` plus the end of the container's log, cut to fit FailureReason."""
    room = MAX_REASON - len(message) - len(" Last log lines: ") - 1
    end = tail(log_path, max(room, 0)) if room > 40 else ""
    if end:
        return DeployFailure(f"{message} Last log lines: {end}")
    return DeployFailure(f"{message} The container wrote nothing to its log.")


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


def port_taken_by_another(handle: ContainerHandle) -> bool:
    """True when the container's port is held, and not by the container (a collision).

    Only answerable on this machine: for a container on another node, False."""
    if node_of(handle) is not None:
        return False
    if not port_is_held(handle.host, handle.port):
        return False  # nobody holds it: the container has not bound it (yet), or it died
    if handle.listens_on(handle.port) is not False:
        return False  # the container holds it, or the OS cannot say: trust the container
    return port_is_held(handle.host, handle.port)  # still held, and not by the container


async def wait_healthy(
    container: RunningContainer,
    handle: ContainerHandle,
    timeout_s: float,
    *,
    started: float | None = None,
) -> None:
    """Poll `/ping` until 200; fail fast if the process exits, or at `started + timeout_s`.

    Raises PortTaken when another process holds the container's port (it answers `/ping` in
    the container's place, or keeps the container from binding), DeployFailure otherwise.
    Until the container is seen holding its port, each poll checks who holds it: a bind(2)
    probe, and the (dearer) listener lookup only when the port is held.
    """
    loop = asyncio.get_running_loop()
    if started is None:
        started = loop.time()
    deadline = started + timeout_s
    hostname = container.spec.hostname
    variant = container.variant.variant_name
    port = handle.port
    taken_polls = 0
    owns_port = False
    remote = node_of(handle) is not None
    while True:
        lost = lost_reason(handle)
        if lost is not None:
            raise DeployFailure(
                f"Container {hostname} for production variant {variant} could not start: {lost}."
            )
        code = handle.exit_code()
        if code is not None:
            if port_taken_by_another(handle):
                raise PortTaken(
                    f"Container {hostname} for production variant {variant} could not bind "
                    f"port {port}: another process holds it."
                )
            raise failure_with_log(
                f"Container {hostname} for production variant {variant} exited with code {code} "
                "before it passed the ping health check.",
                container.launch.log_path,
            )
        remaining = deadline - loop.time()
        answered = await ping(handle.host, port, timeout=min(PING_TIMEOUT_S, max(remaining, 0.05)))
        if remote:
            # The agent on the node says whether the container holds its port (None: not yet
            # known, and the answer is trusted as on a machine that cannot tell).
            owns_port = handle.listens_on(port) is not False
        elif not owns_port and port_is_held(handle.host, port):
            listens = handle.listens_on(port)
            # None: the OS does not say who listens; the answer is then trusted.
            owns_port = listens is not False
            # Someone else's process on the port (it was taken between allocation and the
            # container's bind) must never be routed to: the container will not get the port.
            taken_polls = 0 if owns_port else taken_polls + 1
            if taken_polls >= TAKEN_POLLS:
                log.warning("port %d of container %s is held by another process", port, hostname)
                raise PortTaken(
                    f"Container {hostname} for production variant {variant} could not use "
                    f"port {port}: another process holds it."
                )
        if answered and owns_port:
            return
        now = loop.time()
        if now >= deadline:
            raise failure_with_log(
                f"Container {hostname} for production variant {variant} did not pass the ping "
                f"health check within {timeout_s:g} seconds.",
                container.launch.log_path,
            )
        # Poll quickly at first (light containers are up in tens of ms), then back off.
        await asyncio.sleep(min(0.01 if now - started < 1 else 0.1, deadline - now))


class GroupStarter:
    """Builds `RunningGroup`s from `EndpointSpec`s using a backend, artifacts and ports."""

    def __init__(
        self,
        backend: Backend,
        artifacts: ArtifactStore,
        ports: PortAllocator,
        settings: Settings,
        host: str = "127.0.0.1",
    ) -> None:
        self._backend = backend
        self._placer = backend if isinstance(backend, InstancePlacer) else None
        self._settings = settings
        self._artifacts = artifacts
        self._ports = ports
        self._containers_dir = settings.containers_dir
        self._host = host
        self._max_inflight = settings.max_inflight_per_container
        self._stop_grace_s = settings.stop_grace_s
        self._default_startup_timeout_s = settings.default_startup_timeout_s
        self._health_check_interval_s = max(settings.health_check_interval_s, 0.01)
        self._health_check_failures = max(settings.health_check_failures, 1)

    @property
    def stop_grace_s(self) -> float:
        return self._stop_grace_s

    @property
    def health_check_interval_s(self) -> float:
        """Seconds between two `/ping`s of a serving container (the supervisor's checks)."""
        return self._health_check_interval_s

    @property
    def health_check_failures(self) -> int:
        """Failed checks in a row after which a live container is restarted."""
        return self._health_check_failures

    async def start(self, spec: EndpointSpec, group: RunningGroup) -> None:
        """Start every container of `spec` into `group`; raises DeployFailure (group stopped)."""
        try:
            model_dirs = await self._fetch_models(spec)
            self._plan(spec, group, model_dirs)
            await self._start_all(group)
            group.route = self._route(spec, group)
        except BaseException:
            await self.stop(group)
            raise

    async def _start_all(self, group: RunningGroup) -> None:
        """Start every container; the first failure cancels the starts still under way, so
        nothing launches after its group was given up (and left running unseen)."""
        if self._placer is not None:
            starts = [
                asyncio.ensure_future(self._start_instance(group, key)) for key in group.instances
            ]
        else:
            starts = [asyncio.ensure_future(self._start_one(c)) for c in group.containers]
        try:
            await asyncio.gather(*starts)
        except BaseException:
            for start in starts:
                start.cancel()
            await asyncio.gather(*starts, return_exceptions=True)
            raise

    async def _start_instance(self, group: RunningGroup, key: str) -> None:
        """Place one instance, then start its containers (all or nothing, as for a group)."""
        assert self._placer is not None
        planned = group.instances[key]
        try:
            planned.placed = True  # released at stop even if the placement is cancelled midway
            planned.node = await self._placer.place_instance(planned.request)
        except PlacementError as error:
            raise DeployFailure(str(error)) from None
        members = [c for c in group.containers if c.launch.instance_key == key]
        starts = [asyncio.ensure_future(self._start_one(c)) for c in members]
        try:
            await asyncio.gather(*starts)
        except BaseException:
            for start in starts:
                start.cancel()
            await asyncio.gather(*starts, return_exceptions=True)
            raise

    async def stop(self, group: RunningGroup) -> None:
        group.stopping = True
        for task in group.supervisors:
            task.cancel()
        await asyncio.gather(*(self._stop_one(c) for c in group.containers), return_exceptions=True)
        if self._placer is not None:
            placed = [key for key, planned in group.instances.items() if planned.placed]
            await asyncio.gather(
                *(self._placer.release_instance(key) for key in placed), return_exceptions=True
            )

    async def _stop_one(self, container: RunningContainer) -> None:
        if container.route is not None:
            container.route.available = False
            container.route.unavailable_reason = "it is stopping"
            container.route.pool.close()
        if container.handle is not None:
            await container.handle.stop(self._stop_grace_s)
        self._ports.release(container.launch.port)

    async def _fetch_models(self, spec: EndpointSpec) -> dict[str, Path]:
        urls: dict[str, tuple[VariantSpec, ContainerSpec]] = {}
        for variant in spec.variants:
            for container in variant.containers:
                url = container.model_data_url
                if not url or url in urls:
                    continue
                if self._placer is not None and fetched_on_node(url):
                    continue  # the node that runs the container fetches it (`_node_fetch`)
                urls[url] = (variant, container)

        async def fetch(url: str, variant: VariantSpec, container: ContainerSpec) -> Path:
            try:
                # On the store's own workers: cancelling this task (DeleteEndpoint, shutdown)
                # stops the download, and a hung one never holds the control plane's threads.
                return await self._artifacts.fetch(url, float(variant.download_timeout_s))
            except ArtifactError as error:
                raise DeployFailure(
                    f"Could not get the model data of container {container.hostname} for "
                    f"production variant {variant.variant_name}: {error}"
                ) from None

        # A TaskGroup cancels the other downloads as soon as one fails; the caller gets that
        # first failure itself, not the group wrapping it.
        try:
            async with asyncio.TaskGroup() as downloads:
                tasks = [downloads.create_task(fetch(url, v, c)) for url, (v, c) in urls.items()]
        except BaseExceptionGroup as group:
            raise group.exceptions[0] from None
        return dict(zip(urls, (t.result() for t in tasks), strict=True))

    def _plan(self, spec: EndpointSpec, group: RunningGroup, model_dirs: dict[str, Path]) -> None:
        base = self._containers_dir / spec.endpoint_name / f"r{spec.revision}"
        for variant in spec.variants:
            for replica in range(variant.instance_count):
                instance_id = f"i-{replica}"
                key = f"{spec.endpoint_name}.r{spec.revision}.{variant.variant_name}.{instance_id}"
                if self._placer is not None:
                    group.instances[key] = PlannedInstance(
                        InstanceRequest(
                            key=key,
                            group=f"{spec.endpoint_name}.r{spec.revision}.{variant.variant_name}",
                            description=(
                                f"Instance {instance_id} of production variant "
                                f"{variant.variant_name}"
                            ),
                            limits=tuple(
                                self._backend.image_limits(c.image) for c in variant.containers
                            ),
                        ),
                        variant.variant_name,
                        instance_id,
                    )
                for container in variant.containers:
                    folder = base / variant.variant_name / instance_id / container.hostname
                    folder.mkdir(parents=True, exist_ok=True)
                    model_fetch: NodeModelFetch | None = None
                    model_dir: Path | None
                    if container.model_data_url in model_dirs:
                        model_dir = model_dirs[container.model_data_url]
                    elif container.model_data_url:
                        model_dir = None
                        model_fetch = self._node_fetch(variant, container)
                    else:
                        model_dir = folder / "model"
                        model_dir.mkdir(exist_ok=True)
                    port, safe_range = self._ports.allocate()
                    log_path = folder / "container.log"
                    launch = LaunchSpec(
                        container_id=(
                            f"{spec.endpoint_name}.r{spec.revision}.{variant.variant_name}."
                            f"{instance_id}.{container.hostname}"
                        ),
                        image=container.image,
                        environment=dict(container.environment),
                        model_dir=model_dir,
                        host=self._host,
                        port=port,
                        safe_port_range=safe_range,
                        log_path=log_path,
                        limits=self._backend.image_limits(container.image),
                        work_dir=folder,
                        execution_role_arn=variant.execution_role_arn,
                        instance_key=key if self._placer is not None else None,
                        model_fetch=model_fetch,
                    )
                    stream = LogStream(
                        spec.endpoint_name,
                        variant.variant_name,
                        instance_id,
                        container.hostname,
                        log_path,
                    )
                    timeout = variant.startup_timeout_s or self._default_startup_timeout_s
                    group.containers.append(
                        RunningContainer(container, variant, launch, stream, float(timeout))
                    )

    def _node_fetch(self, variant: VariantSpec, container: ContainerSpec) -> NodeModelFetch:
        settings = self._settings
        assert container.model_data_url is not None
        return NodeModelFetch(
            url=container.model_data_url,
            timeout_s=float(variant.download_timeout_s),
            container=container.hostname,
            variant=variant.variant_name,
            max_bytes=settings.max_model_bytes,
            max_ratio=settings.max_model_ratio,
            workers=settings.artifact_workers,
            allow_hosts=tuple(settings.allow_model_hosts),
        )

    async def _start_one(self, container: RunningContainer) -> None:
        """Start one container and wait for its ping, all within its startup timeout.

        Only a port collision starts it again (on a fresh port), at most PORT_ATTEMPTS times
        and never past the one deadline.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        taken: list[int] = []
        for attempt in range(1, PORT_ATTEMPTS + 1):
            handle = await self.launch(container)
            if attempt == 1 and container.launch.model_fetch is not None:
                # The node fetched the model data during the launch: that time is the
                # download's (its own timeout), not the container's startup.
                started = loop.time()
            try:
                await wait_healthy(container, handle, container.startup_timeout_s, started=started)
                if not getattr(handle, "adopted", False):  # adopted: it started long ago
                    container.record_setup(loop.time() - started)
                return
            except PortTaken as failure:
                port = container.launch.port
                taken.append(port)
                if attempt == PORT_ATTEMPTS:
                    raise DeployFailure(
                        f"{failure.reason} Ports {', '.join(map(str, taken))} were all taken "
                        "by other processes; free some ports of the range or try again."
                    ) from None
            log.warning(
                "port %d of container %s was taken by another process; retrying on a new port",
                port,
                container.spec.hostname,
            )
            await handle.stop(1.0)
            self._ports.release(port)
            new_port, safe_range = self._ports.allocate()
            container.launch = replace(container.launch, port=new_port, safe_port_range=safe_range)

    async def launch(self, container: RunningContainer) -> ContainerHandle:
        """Start (or restart) one container's process; the handle is kept on `container`."""
        try:
            handle = await self._backend.start(container.launch)
        except Exception as error:
            raise DeployFailure(
                f"Container {container.spec.hostname} for production variant "
                f"{container.variant.variant_name} could not be started: {error}"
            ) from None
        container.handle = handle
        return handle

    def pool_for(self, container: RunningContainer) -> ContainerPool:
        """Connections to where the container listens: the handle's address (on another node
        for Ray), which the backend may have chosen rather than the planned one."""
        handle = container.handle
        if handle is None:
            return UpstreamPool(container.launch.host, container.launch.port, self._max_inflight)
        pool = UpstreamPool(handle.host, handle.port, self._max_inflight)
        if node_of(handle) is None:
            return pool
        return NodeAwarePool(pool, container)

    def _route(self, spec: EndpointSpec, group: RunningGroup) -> EndpointRoute:
        variants: list[VariantRoute] = []
        for variant in spec.variants:
            replicas: list[ReplicaRoute] = []
            for replica in range(variant.instance_count):
                instance_id = f"i-{replica}"
                routes: list[ContainerRoute] = []
                for running in group.containers:
                    if running.variant is variant and running.stream.instance_id == instance_id:
                        running.route = ContainerRoute(
                            hostname=running.spec.hostname,
                            pool=self.pool_for(running),
                            log_stream=running.stream.name,
                        )
                        routes.append(running.route)
                replicas.append(ReplicaRoute.of(instance_id, tuple(routes)))
            variants.append(
                VariantRoute(
                    name=variant.variant_name,
                    weight=variant.initial_weight,
                    mode=variant.mode,
                    replicas=tuple(replicas),
                )
            )
        return EndpointRoute(spec.endpoint_name, tuple(variants))
