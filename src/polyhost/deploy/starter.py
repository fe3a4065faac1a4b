"""Starting and stopping one endpoint revision: every replica of every variant, all containers.

A group is all-or-nothing: it is handed to the router only once every container passed its
ping, and if any container fails the whole group is stopped and the failure says which container
and quotes the end of its log (that text becomes the endpoint's FailureReason).

A container's startup timeout is one deadline for everything its start takes. The only reason to
start it again is a port collision (`health.wait_healthy` raises `PortTaken`): it is started on
a fresh port, at most PORT_ATTEMPTS times and never past that one deadline.

A backend that places instances (`InstancePlacer`, Ray) gets each instance placed before its
containers start, and released once they stopped. The routes then use the address the backend
reports for each container (its node's), and a request that fails because the container's
node was lost is answered as a 503 naming the node (`node_pool.NodeAwarePool`).

Isolated (`confinement.py`: with auth, or `--isolate`), each instance gets a network of its own
from the backend (`NetworkIsolator.open_network`) before its containers start, and, on the
process backend, a user of its own: every container of the instance is launched into that
network as that user, and the routes and health checks connect through the network
(`InstanceNetwork.connect`), since nothing outside it reaches the containers. The folders a
container user needs (its working folder, its model) are opened to it, and nothing else. Both
are let go of when the group stops.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from polyhost.backends.base import (
    Backend,
    ContainerHandle,
    InstancePlacer,
    InstanceRequest,
    LaunchSpec,
    ModelDirMounted,
    ModelsShipped,
    NetworkIsolator,
    PlacementError,
    ResourceLimits,
    is_adopted,
    node_of,
)
from polyhost.backends.confinement import (
    Confinement,
    ConfinementError,
    open_for_reading,
    open_path_to,
)
from polyhost.control.seam import ContainerSpec, EndpointSpec, VariantSpec
from polyhost.deploy.failure import DeployFailure, PortTaken
from polyhost.deploy.health import wait_healthy
from polyhost.deploy.node_pool import NodeAwarePool
from polyhost.deploy.ports import PortAllocator
from polyhost.deploy.running import PlannedInstance, RunningContainer, RunningGroup
from polyhost.logs.streams import LogStream
from polyhost.modeldata.node_fetch import NodeModelFetch, fetched_on_node
from polyhost.modeldata.store import ArtifactError, ArtifactStore
from polyhost.router.multi_model import (
    MULTI_MODEL_ENV,
    FolderStager,
    ModelStager,
    ModelStaging,
    MultiModelContainer,
    MultiModelLimits,
)
from polyhost.router.table import (
    ContainerRoute,
    EndpointRoute,
    ReplicaRoute,
    VariantRoute,
)
from polyhost.router.upstream import ContainerPool, HeadLimits, UpstreamPool
from polyhost.settings import Settings

log = logging.getLogger("polyhost.deploy")

PORT_ATTEMPTS = 3


class GroupStarter:
    """Builds `RunningGroup`s from `EndpointSpec`s using a backend, artifacts and ports, and
    stops them: a group's stop undoes exactly what its start took (containers, ports, placed
    instances), so both live here."""

    def __init__(
        self,
        backend: Backend,
        artifacts: ArtifactStore,
        ports: PortAllocator,
        settings: Settings,
        host: str = "127.0.0.1",
        confinement: Confinement | None = None,
    ) -> None:
        self._backend = backend
        self._placer = backend if isinstance(backend, InstancePlacer) else None
        confinement = confinement or Confinement()
        self._isolator = (
            backend if confinement.networks and isinstance(backend, NetworkIsolator) else None
        )
        self._users = confinement.users
        self._settings = settings
        self._artifacts = artifacts
        self._ports = ports
        self._containers_dir = settings.containers_dir
        self._host = host
        self._max_inflight = settings.max_inflight_per_container
        # A container's answer head is capped as a request head is (the same three settings).
        self._head_limits = HeadLimits.from_settings(settings)
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
            await self._confine(spec, group)
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
        networks, group.networks = group.networks, []
        await asyncio.gather(*(network.close() for network in networks), return_exceptions=True)
        users, group.users = group.users, []
        if self._users is not None:
            for user in users:
                self._users.release(user)

    async def _confine(self, spec: EndpointSpec, group: RunningGroup) -> None:
        """Give each instance its network and user (isolation on; see the module docstring)."""
        if self._isolator is None and self._users is None:
            return
        instances: dict[tuple[str, str], list[RunningContainer]] = {}
        for container in group.containers:
            instances.setdefault(container.instance, []).append(container)
        for (variant, instance_id), members in instances.items():
            network = None
            if self._isolator is not None:
                key = f"{spec.endpoint_name}.r{spec.revision}.{variant}.{instance_id}"
                try:
                    network = await self._isolator.open_network(key)
                except Exception as error:
                    raise DeployFailure(
                        f"Instance {instance_id} of production variant {variant} could not get "
                        f"a network of its own: {error}"
                    ) from None
                group.networks.append(network)
            user = None
            if self._users is not None:
                try:
                    user = self._users.allocate()
                except ConfinementError as error:
                    raise DeployFailure(str(error)) from None
                group.users.append(user)
            for container in members:
                container.launch = replace(container.launch, network=network, user=user)
        if self._users is not None:
            await asyncio.to_thread(self._open_folders, group)

    def _open_folders(self, group: RunningGroup) -> None:
        """What a container user must reach: its working folder (and the folders above it),
        its model. Logs stay the server's (0600)."""
        state = self._settings.state_dir
        for container in group.containers:
            launch = container.launch
            if launch.work_dir is not None:
                open_path_to(launch.work_dir, state)
            if launch.model_dir is not None:
                open_path_to(launch.model_dir.parent, state)
                open_for_reading(launch.model_dir)

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
                if not url or url in urls or container.multi_model:
                    continue  # a multi-model prefix: its models are fetched on first call
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

    async def grow(self, spec: EndpointSpec, group: RunningGroup) -> RunningGroup:
        """Start the replicas `spec` has beyond those `group` runs (an inference component's
        copy count raised, a variant's instance count: UpdateEndpointWeightsAndCapacities), in
        folders of the group's revision, each instance placed and isolated as at a start; the
        started ones, as a group the caller merges into `group` (empty when nothing grows: no
        model data is fetched again). Raises DeployFailure (the new ones stopped)."""
        first = {
            v.variant_name: sum(
                1 for c in group.containers if c.variant.variant_name == v.variant_name
            )
            // max(len(v.containers), 1)
            for v in spec.variants
        }
        grown = RunningGroup(replace(spec, revision=group.folder_revision))
        if all(first[v.variant_name] >= v.instance_count for v in spec.variants):
            return grown
        try:
            model_dirs = await self._fetch_models(spec)
            self._plan(grown.spec, grown, model_dirs, first=first)
            await self._confine(grown.spec, grown)
            await self._start_all(grown)
        except BaseException:
            await self.stop(grown)
            raise
        return grown

    async def stop_containers(self, group: RunningGroup, gone: list[RunningContainer]) -> None:
        """Stop some containers of a group that goes on serving (copies or instances
        removed), and let go of what their instances held: placement, network, user. (An
        instance added later under the same id gets them anew.)"""
        for container in gone:
            if container.supervisor is not None:
                container.supervisor.cancel()
                if container.supervisor in group.supervisors:
                    group.supervisors.remove(container.supervisor)
        await asyncio.gather(*(self._stop_one(c) for c in gone), return_exceptions=True)
        keys = {c.launch.instance_key for c in gone if c.launch.instance_key is not None}
        if self._placer is not None:
            await asyncio.gather(
                *(self._placer.release_instance(key) for key in keys), return_exceptions=True
            )
        for key in keys:
            group.instances.pop(key, None)
        await self._release_confinement(group, gone)

    async def _release_confinement(self, group: RunningGroup, gone: list[RunningContainer]) -> None:
        """Close the networks and free the users of stopped containers' instances."""
        networks = {id(c.launch.network): c.launch.network for c in gone if c.launch.network}
        group.networks = [n for n in group.networks if id(n) not in networks]
        await asyncio.gather(*(n.close() for n in networks.values()), return_exceptions=True)
        users = {c.launch.user for c in gone if c.launch.user is not None}
        group.users = [u for u in group.users if u not in users]
        if self._users is not None:
            for user in users:
                self._users.release(user)

    def route(self, spec: EndpointSpec, group: RunningGroup) -> EndpointRoute:
        """The route of `group` as `spec` says (its containers' routes kept where they have
        one, so their connections and counters carry on)."""
        return self._route(spec, group)

    def _plan(
        self,
        spec: EndpointSpec,
        group: RunningGroup,
        model_dirs: dict[str, Path],
        first: dict[str, int] | None = None,
    ) -> None:
        """Plan the containers of every replica (from `first`'s per variant, for a group
        resized in place)."""
        base = self._containers_dir / spec.endpoint_name / f"r{spec.revision}"
        for variant in spec.variants:
            start = (first or {}).get(variant.variant_name, 0)
            for replica in range(start, variant.instance_count):
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
                            limits=tuple(self._limits(variant, c) for c in variant.containers),
                        ),
                        variant.variant_name,
                        instance_id,
                    )
                for container in variant.containers:
                    folder = base / variant.variant_name / instance_id / container.hostname
                    folder.mkdir(parents=True, exist_ok=True)
                    model_fetch: NodeModelFetch | None = None
                    model_dir: Path | None
                    environment = dict(container.environment)
                    if container.multi_model:
                        # Models come later, one by one (`router.multi_model`); the model dir
                        # stays empty.
                        environment[MULTI_MODEL_ENV] = "true"
                        model_dir = folder / "model"
                        model_dir.mkdir(exist_ok=True)
                    elif container.model_data_url in model_dirs:
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
                        environment=environment,
                        model_dir=model_dir,
                        host=self._host,
                        port=port,
                        safe_port_range=safe_range,
                        log_path=log_path,
                        limits=self._limits(variant, container),
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

    def _limits(self, variant: VariantSpec, container: ContainerSpec) -> ResourceLimits:
        """The image's limits, or an inference component's copy's own: its
        NumberOfCpuCoresRequired and MaxMemoryRequiredInMb, each where given."""
        limits = self._backend.image_limits(container.image)
        if variant.cpus is None and variant.memory_mb is None:
            return limits
        return ResourceLimits(
            memory_bytes=(
                variant.memory_mb * 1024 * 1024
                if variant.memory_mb is not None
                else limits.memory_bytes
            ),
            cpus=variant.cpus if variant.cpus is not None else limits.cpus,
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
                if not is_adopted(handle):  # adopted: it started long ago
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
        network = container.launch.network
        connect = None if network is None else network.connect
        if handle is None:
            return UpstreamPool(
                container.launch.host,
                container.launch.port,
                self._max_inflight,
                head_limits=self._head_limits,
                connect=connect,
            )
        pool = UpstreamPool(
            handle.host,
            handle.port,
            self._max_inflight,
            head_limits=self._head_limits,
            connect=connect,
        )
        if node_of(handle) is None:
            return pool
        return NodeAwarePool(pool, container)

    def _multi_model(self, container: RunningContainer) -> MultiModelContainer | None:
        """The loaded-model table of a MultiModel container (None for any other)."""
        spec = container.spec
        if not spec.multi_model or spec.model_data_url is None:
            return None
        handle = container.handle
        address = (
            (handle.host, handle.port)
            if handle is not None
            else (container.launch.host, container.launch.port)
        )
        network = container.launch.network
        settings = self._settings
        staging: ModelStager[Any] | None = None
        model_dir = container.launch.model_dir
        if isinstance(handle, ModelDirMounted) and model_dir is not None:
            # The container does not see the artifact store: its models go into its own folder.
            staging = FolderStager(ModelStaging(model_dir, handle.container_model_dir))
        elif isinstance(handle, ModelsShipped):
            # It runs on a machine of its own: its models are shipped to its node.
            staging = handle.model_staging()
        return MultiModelContainer(
            hostname=spec.hostname,
            prefix=spec.model_data_url,
            cache=spec.model_cache,
            fetcher=self._artifacts,
            limits=MultiModelLimits(
                wait_s=settings.model_load_wait_s,
                load_timeout_s=settings.model_load_timeout_s,
                download_timeout_s=float(container.variant.download_timeout_s),
                max_loaded=settings.max_loaded_models,
            ),
            address=address,
            connect=None if network is None else network.connect,
            staging=staging,
        )

    def _route(self, spec: EndpointSpec, group: RunningGroup) -> EndpointRoute:
        variants: list[VariantRoute] = []
        for variant in spec.variants:
            replicas: list[ReplicaRoute] = []
            for replica in range(variant.instance_count):
                instance_id = f"i-{replica}"
                routes: list[ContainerRoute] = []
                for running in group.containers:
                    if running.variant is variant and running.stream.instance_id == instance_id:
                        if running.route is None:
                            running.route = ContainerRoute(
                                hostname=running.spec.hostname,
                                pool=self.pool_for(running),
                                log_stream=running.stream.name,
                                multi_model=self._multi_model(running),
                            )
                            if running.route.multi_model is not None:
                                running.route.multi_model.on_hung = running.request_restart
                        routes.append(running.route)
                replicas.append(ReplicaRoute.of(instance_id, tuple(routes)))
            variants.append(
                VariantRoute(
                    name=variant.variant_name,
                    weight=variant.initial_weight,
                    mode=variant.mode,
                    replicas=tuple(replicas),
                    random=variant.routing == "RANDOM",
                    shadow=variant.shadow,
                )
            )
        return EndpointRoute(
            spec.endpoint_name,
            tuple(variants),
            spec.async_inference,
            for_components=spec.for_components,
            component_of=None if spec.component is None else spec.component.endpoint_name,
            component_name=None if spec.component is None else spec.component.component_name,
        )
