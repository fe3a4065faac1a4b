"""The Ray backend: each instance of a variant is placed on a Ray cluster as one unit.

`polyhost serve --backend ray` stays the control plane and the router; Ray places and watches.

- **Placement.** An instance is a placement group with one bundle holding the CPU and memory
  of all its containers (the image's limits; `--ray-container-cpus`/`--ray-container-memory`
  for a container whose image sets none), `STRICT_PACK`, as the containers of one SageMaker
  instance share a machine (`placement`). Instances of one variant are spread: each is
  pinned in turn to a node that does not hold that variant yet, when one has room.
- **Agent.** A detached, named actor per instance runs in the placement group and starts the
  containers with the process backend's code on its node (`agent`). The handles the server
  keeps (`container`) carry the node's address and the port the agent chose there, so the
  router calls the containers over the network with the usual pools and bounds.
- **Watching.** One poller per instance asks its agent, every POLL_S, for exit codes, stats and
  the next slice of each container's log (written into the server's log file of that container,
  so the logs route and CloudWatch Logs see it). An agent that dies (Ray says so), or that stops
  answering for LOST_AFTER_S while none of its containers accepts a connection, marks the
  instance *lost*, naming its node: the deployer withdraws it from routing and the supervisor
  places it again (`start` of a container of a lost instance places the instance anew).
  Ray's blocking calls run on threads of their own (`calls`).
- **Server restarts.** Actors and placement groups live in a Ray namespace derived from the
  state folder's server id, so two servers never see each other's. A restarted server adopts
  the agent of each instance it places again (same container ids and fingerprints: same
  processes); what no endpoint claims once reconciliation settled is stopped
  (`release_unclaimed`) instead of being reaped up front.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from polyhost.backends.base import (
    ContainerStartError,
    InstanceRequest,
    LaunchSpec,
    PlacementError,
)
from polyhost.backends.container_log import open_container_log
from polyhost.backends.ray import models as ray_models
from polyhost.backends.ray import placement as ray_placement
from polyhost.backends.ray.agent import AgentLaunch, ContainerState, InstanceAgent, Started
from polyhost.backends.ray.calls import RAY_CALLS, awaited, cause, first_line, ray_call
from polyhost.backends.ray.container import PlacedInstance, RayContainer
from polyhost.backends.ray.log_shipping import SHIP_MAX_BYTES
from polyhost.backends.registry import ImageRegistry, RegistryImages
from polyhost.backends.server_id import server_id
from polyhost.settings import Settings

log = logging.getLogger("polyhost.backends.ray")

POLL_S = 0.3  # how often each agent is asked for its containers' state
LOST_AFTER_S = 0.6  # no answer this long, and no container accepts a connection: lost
PROBE_TIMEOUT_S = 0.3  # one TCP connect to a container, when its agent is silent
STATS_EVERY_S = 2.0  # CPU and memory are sampled this often (psutil costs on the node)
AGENT_START_TIMEOUT_S = 120.0  # a new actor's worker process: spawn and import polyhost
CALL_TIMEOUT_S = 60.0  # start/stop of a container through its agent, beyond its own grace
GCS_CONNECT_TIMEOUT_S = 5.0  # the cluster address must accept a connection this fast
ADOPT_TIMEOUT_S = 5.0  # a previous run's agent must answer this fast to be adopted
# A node seen lost is not placed on for this long (or until Ray, too, says it is dead).
LOST_NODE_EXCLUDED_S = 120.0


def ray_address(settings: Settings) -> str:
    return settings.ray_address or os.environ.get("RAY_ADDRESS") or "auto"


def check_reachable(address: str, timeout_s: float = GCS_CONNECT_TIMEOUT_S) -> None:
    """Fail fast (ConnectionError naming the address) when nothing answers at a `host:port`
    cluster address: `ray.init` itself would retry for ever. `auto` is left to Ray (it fails
    at once when this machine runs no Ray node); Ray Client (`ray://`) is not supported."""
    if address.startswith("ray://"):
        raise ConnectionError(
            "Ray Client addresses (ray://) are not supported: give the cluster's GCS address "
            "(host:port, e.g. 10.0.0.5:6379) and run the server on a machine that is a Ray node"
        )
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as error:
        raise ConnectionError(
            f"nothing answers at {address} within {timeout_s:g}s ({error.strerror or error})"
        ) from None


def namespace_of(state_dir: Path) -> str:
    """The Ray namespace of the server on `state_dir`: its actors and placement groups."""
    return f"polyhost-{server_id(state_dir)}"


class RayBackend(RegistryImages):
    """Places instances on a Ray cluster and runs their containers there; see the module doc."""

    def __init__(self, settings: Settings, images: ImageRegistry) -> None:
        import ray

        self._ray = ray
        self._settings = settings
        self._images = images
        self._namespace = namespace_of(settings.state_dir)
        self._address = ray_address(settings)
        check_reachable(self._address)
        where: dict[str, str] = {}
        if settings.ray_node_address:
            where["_node_ip_address"] = settings.ray_node_address
        ray.init(
            address=self._address,
            namespace=self._namespace,
            logging_level=logging.WARNING,
            log_to_driver=False,
            include_dashboard=False,
            **where,
        )
        self._agent_class = ray.remote(InstanceAgent)
        self._instances: dict[str, PlacedInstance] = {}
        self._requests: dict[str, InstanceRequest] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Reservations are made one at a time, so each sees where the previous went; the
        # agents then start in parallel. key → (variant group, node) until the agent is up.
        self._placing: asyncio.Lock | None = None
        self._reserved: dict[str, tuple[str, str]] = {}
        self._models: dict[Path, tuple[str, Any]] = {}
        self._lost_nodes: dict[str, float] = {}  # node address → when it was seen lost
        log.info("ray backend on cluster %s, namespace %s", self._address, self._namespace)

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def max_model_bytes(self) -> int:
        """The most model data shipped to a node at once (`--model-max-bytes`)."""
        return self._settings.max_model_bytes

    def placed(self, key: str) -> PlacedInstance | None:
        """The instance `key` names as it is placed now (None when it is not)."""
        return self._instances.get(key)

    # -- placement --------------------------------------------------------------------------------
    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def _room(self, request: InstanceRequest) -> ray_placement.Room:
        settings = self._settings
        return ray_placement.room_of(
            request.limits, settings.ray_container_cpus, settings.ray_container_memory
        )

    async def place_instance(self, request: InstanceRequest) -> str:
        self._requests[request.key] = request
        try:
            return await self._place_instance(request)
        except PlacementError:
            raise
        except Exception as error:  # Ray itself failing: still a FailureReason, not a bug
            raise PlacementError(
                f"{request.description} could not be placed on the Ray cluster: {cause(error)}"
            ) from None

    async def _place_instance(self, request: InstanceRequest) -> str:
        async with self._lock(request.key):
            instance = self._instances.get(request.key)
            if instance is not None and instance.lost is None:
                return instance.node_ip
            generation = 1
            prefer: str | None = None
            if instance is None:
                adopted = await self._adopt(request)
                if adopted is not None:
                    return adopted.node_ip
                generation = await ray_call(self._next_generation, request.key)
            else:
                generation = instance.generation + 1
                if not instance.node_lost:
                    # Only the agent died: a new agent on the same node stops what the old
                    # one's containers left there (the process backend's orphan reaping).
                    prefer = instance.node_ip
                await self._discard(instance)
            placed = await self._place(request, generation, prefer)
            self._instances[request.key] = placed
            self._watch(placed)
            return placed.node_ip

    def _taken_nodes(self, request: InstanceRequest) -> set[str]:
        """Nodes holding (or reserved for) another instance of the request's variant."""
        taken = {
            i.node_ip
            for i in self._instances.values()
            if i.request.group == request.group and i.lost is None
        }
        taken.update(
            node
            for key, (group, node) in self._reserved.items()
            if group == request.group and key != request.key
        )
        return taken

    async def _place(
        self, request: InstanceRequest, generation: int, prefer: str | None = None
    ) -> PlacedInstance:
        ray = self._ray
        room = self._room(request)
        name = f"{request.key}/g{generation}"
        if self._placing is None:
            self._placing = asyncio.Lock()
        async with self._placing:
            group, node = await ray_placement.reserve(
                ray,
                room,
                request.description,
                f"{self._namespace}/{name}",
                avoid=self._taken_nodes(request),
                exclude=self._excluded_nodes(),
                prefer=prefer,
                timeout_s=self._settings.ray_placement_timeout_s,
            )
            if node is not None:
                self._reserved[request.key] = (request.group, node)
        try:
            return await self._start_agent(request, generation, group, room)
        finally:
            self._reserved.pop(request.key, None)

    async def _start_agent(
        self, request: InstanceRequest, generation: int, group: Any, room: ray_placement.Room
    ) -> PlacedInstance:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        name = f"{request.key}/g{generation}"

        agent = self._agent_class.options(  # type: ignore[attr-defined]
            name=name,
            lifetime="detached",
            num_cpus=room.cpus,
            memory=room.memory_bytes,
            max_restarts=0,
            scheduling_strategy=PlacementGroupSchedulingStrategy(group, 0),
        ).remote(self._settings, self._images, request.key, self._namespace)
        try:
            node_ip, node_id, _ = await asyncio.wait_for(
                awaited(agent.describe.remote()), AGENT_START_TIMEOUT_S
            )
        except BaseException as error:
            await ray_call(self._kill, agent, group)
            if isinstance(error, Exception):
                raise PlacementError(
                    f"The agent of {request.description} did not start on the Ray cluster: "
                    f"{cause(error)}"
                ) from None
            raise
        log.info("instance %s placed on node %s", name, node_ip)
        return PlacedInstance(request, generation, agent, group, node_ip, node_id, adopted=False)

    def _excluded_nodes(self) -> set[str]:
        now = time.monotonic()
        self._lost_nodes = {
            address: at
            for address, at in self._lost_nodes.items()
            if now - at < LOST_NODE_EXCLUDED_S
        }
        return set(self._lost_nodes)

    def _next_generation(self, key: str) -> int:
        """One more than any generation of `key` a previous run left (names stay unique)."""
        found = [
            _generation(name, key)
            for name in self._ray.util.list_named_actors(all_namespaces=False)
        ]
        return max([g for g in found if g is not None], default=0) + 1

    async def _adopt(self, request: InstanceRequest) -> PlacedInstance | None:
        """The live agent a previous server run left for this instance, if any."""
        ray = self._ray
        names = await ray_call(ray.util.list_named_actors, False)
        generations = sorted(
            (g for g in (_generation(n, request.key) for n in names) if g is not None),
            reverse=True,
        )
        if not generations:
            return None
        generation = generations[0]
        name = f"{request.key}/g{generation}"
        try:
            agent = await ray_call(ray.get_actor, name)
            node_ip, node_id, _ = await asyncio.wait_for(
                awaited(agent.describe.remote()), ADOPT_TIMEOUT_S
            )
        except Exception as error:
            log.warning("cannot adopt the agent %s: %s", name, cause(error))
            return None
        group = await ray_call(ray_placement.find_group, ray, f"{self._namespace}/{name}")
        instance = PlacedInstance(request, generation, agent, group, node_ip, node_id, adopted=True)
        self._instances[request.key] = instance
        self._watch(instance)
        log.info("instance %s adopted on node %s", name, node_ip)
        return instance

    async def release_instance(self, key: str) -> None:
        async with self._lock(key):
            instance = self._instances.pop(key, None)
            self._requests.pop(key, None)
            if instance is not None:
                await self._discard(instance, graceful=instance.lost is None)
        self._forget_unused_models()

    def _forget_unused_models(self) -> None:
        """Drop the object store's copy of models no container of this server uses any more
        (a later start packs and ships it again)."""
        used = {
            container.model_dir
            for instance in self._instances.values()
            for container in instance.containers.values()
        }
        for folder in [f for f in self._models if f not in used]:
            del self._models[folder]

    async def _discard(self, instance: PlacedInstance, graceful: bool = False) -> None:
        if instance.poller is not None:
            instance.poller.cancel()
        for container in instance.containers.values():
            container.close_log()
        if graceful:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    awaited(instance.agent.stop_all.remote(self._settings.stop_grace_s)),
                    self._settings.stop_grace_s + CALL_TIMEOUT_S,
                )
        await ray_call(self._kill, instance.agent, instance.group)

    def _kill(self, agent: Any, group: Any) -> None:
        ray = self._ray
        with contextlib.suppress(Exception):
            ray.kill(agent, no_restart=True)
        if group is not None:
            with contextlib.suppress(Exception):
                ray.util.remove_placement_group(group)

    async def release_unclaimed(self) -> list[str]:
        """Stop the agents and placement groups of this namespace no instance claims now.

        An instance being placed right now (a CreateEndpoint just after the restart) is spared:
        its agent and group exist before it is claimed."""
        ray = self._ray
        claimed = {i.name for i in self._instances.values()}
        placing = set(self._requests) - set(self._instances)

        def spared(name: str) -> bool:
            return name in claimed or name.rpartition("/g")[0] in placing

        names = await ray_call(ray.util.list_named_actors, False)
        released: list[str] = []
        for name in names:
            if "/g" not in name or spared(name):
                continue
            try:
                agent = await ray_call(ray.get_actor, name)
            except Exception:
                continue
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    awaited(agent.stop_all.remote(self._settings.stop_grace_s)),
                    self._settings.stop_grace_s + CALL_TIMEOUT_S,
                )
            group = await ray_call(ray_placement.find_group, ray, f"{self._namespace}/{name}")
            await ray_call(self._kill, agent, group)
            released.append(name)
        prefix = f"{self._namespace}/"
        for group_name, group in await ray_call(ray_placement.groups_named, ray, prefix):
            if not spared(group_name[len(prefix) :]):
                await ray_call(self._kill, None, group)
        if released:
            log.warning("stopped %d instance(s) a previous run left unclaimed", len(released))
        return released

    async def reap_orphans(self, grace_s: float) -> list[str]:
        """Nothing up front: a restarted server adopts its predecessor's instances as it places
        them again, and `release_unclaimed` stops the rest once reconciliation settled."""
        return []

    # -- containers -----------------------------------------------------------------------------
    async def start(self, spec: LaunchSpec) -> RayContainer:
        key = spec.instance_key
        if key is None or key not in self._requests:
            raise ContainerStartError(
                f"container {spec.container_id} belongs to no placed instance"
            )
        if not self._images.knows_image(spec.image):
            raise self._images.not_known(spec.image)
        instance = self._instances.get(key)
        if instance is None or instance.lost is not None:
            # A restart after the instance's node was lost: place the instance anew.
            try:
                await self.place_instance(self._requests[key])
            except PlacementError as error:
                raise ContainerStartError(str(error)) from None
            instance = self._instances[key]
        digest, model = await self._ship_model(spec.model_dir)
        launch = AgentLaunch(spec, fingerprint(spec, digest), digest, model)
        try:
            started: Started = await asyncio.wait_for(
                awaited(instance.agent.start.remote(launch)),
                start_timeout(self._settings, spec),
            )
        except TimeoutError:
            raise ContainerStartError(
                f"the agent on node {instance.node_ip} did not start the container in time"
            ) from None
        except Exception as error:
            raise ContainerStartError(f"on node {instance.node_ip}: {cause(error)}") from None
        previous = instance.containers.get(spec.container_id)
        if previous is not None:
            previous.close_log()
        logfile = open_container_log(spec, self._settings)
        handle = RayContainer(self, instance, spec, started, logfile)
        instance.containers[spec.container_id] = handle
        log.info(
            "%s container %s on node %s (pid %d, port %d)",
            "adopted" if started.adopted else "started",
            spec.container_id,
            instance.node_ip,
            started.pid,
            started.port,
        )
        return handle

    async def stop_container(
        self, instance: PlacedInstance, container: RayContainer, grace_s: float
    ) -> None:
        if instance.containers.get(container.container_id) is container:
            del instance.containers[container.container_id]
        if instance.lost is not None:
            return
        try:
            rest: bytes = await asyncio.wait_for(
                awaited(instance.agent.stop.remote(container.container_id, grace_s)),
                grace_s + CALL_TIMEOUT_S,
            )
        except Exception as error:
            log.warning("stopping %s: %s", container.container_id, cause(error))
            return
        if rest:
            container.write_log(rest)

    async def _ship_model(self, model_dir: Path | None) -> tuple[str | None, list[Any] | None]:
        """The model folder's digest and object reference (packed and put once per folder)."""
        if model_dir is None or ray_models.is_empty(model_dir):
            return None, None
        known = self._models.get(model_dir)
        if known is None:

            def put() -> tuple[str, Any]:
                digest, data = ray_models.pack(model_dir, self._settings.max_model_bytes)
                return digest, self._ray.put(data)

            try:
                known = await ray_call(put)
            except (OSError, ray_models.ModelTooLarge) as error:
                raise ContainerStartError(f"cannot ship the model data: {error}") from None
            self._models[model_dir] = known
        return known[0], [known[1]]

    # -- watching ---------------------------------------------------------------------------------
    def _watch(self, instance: PlacedInstance) -> None:
        instance.answered = time.monotonic()
        instance.poller = asyncio.get_running_loop().create_task(self._poll_forever(instance))

    async def _poll_forever(self, instance: PlacedInstance) -> None:
        while instance.lost is None:
            await self._poll(instance)
            await asyncio.sleep(POLL_S)

    async def _poll(self, instance: PlacedInstance) -> None:
        from ray.exceptions import RayActorError

        now = time.monotonic()
        with_stats = now - instance.stats_at >= STATS_EVERY_S
        try:
            states: dict[str, ContainerState] = await asyncio.wait_for(
                awaited(instance.agent.poll.remote(with_stats, SHIP_MAX_BYTES)),
                LOST_AFTER_S,
            )
        except RayActorError as error:
            # The agent alone, or its whole node? Its containers tell: on a live node they
            # still accept connections.
            node_lost = not await self._any_answers(instance)
            self._lose(instance, f"its agent died ({first_line(error)})", node_lost=node_lost)
            return
        except TimeoutError:
            silent = time.monotonic() - instance.answered
            if silent >= LOST_AFTER_S and not await self._any_answers(instance):
                self._lose(
                    instance,
                    f"its agent did not answer for {silent:.1f}s and none of its containers "
                    "accepts connections",
                    node_lost=True,
                )
            return
        except Exception as error:  # a transient failure of the call itself
            log.debug("poll of %s failed: %s", instance.name, error)
            return
        instance.answered = time.monotonic()
        if with_stats:
            instance.stats_at = now
        for container_id, state in states.items():
            container = instance.containers.get(container_id)
            if container is not None:
                container.observe(state)

    async def _any_answers(self, instance: PlacedInstance) -> bool:
        async def connects(container: RayContainer) -> bool:
            try:
                async with asyncio.timeout(PROBE_TIMEOUT_S):
                    _, writer = await asyncio.open_connection(container.host, container.port)
            except (OSError, TimeoutError):
                return False
            writer.close()
            return True

        containers = list(instance.containers.values())
        answers = await asyncio.gather(*(connects(c) for c in containers))
        return any(answers)

    def _lose(self, instance: PlacedInstance, why: str, *, node_lost: bool) -> None:
        if instance.lost is not None:
            return
        where = f"node {instance.node_ip} (Ray node {instance.node_id[:12]})"
        instance.node_lost = node_lost
        if node_lost:
            instance.lost = f"its {where} was lost: {why}"
        else:
            instance.lost = f"its agent on {where} was lost: {why}"
        log.warning("instance %s: %s", instance.request.key, instance.lost)
        if not node_lost:
            RAY_CALLS.submit(self._kill, instance.agent, instance.group)
            return
        self._lost_nodes[instance.node_ip] = time.monotonic()
        # Every other instance on that node is gone with it: say so now rather than at its
        # own next poll.
        for other in list(self._instances.values()):
            if other is not instance and other.node_ip == instance.node_ip:
                self._lose(other, why, node_lost=True)
        # Ray would place the group again by itself; polyhost places the instance instead.
        RAY_CALLS.submit(self._kill, instance.agent, instance.group)


def fingerprint(spec: LaunchSpec, model_digest: str | None) -> str:
    """What must be equal for a running container to be adopted rather than restarted."""
    parts = (
        spec.image,
        sorted(spec.environment.items()),
        model_digest,
        spec.model_fetch.source if spec.model_fetch is not None else None,
        spec.limits,
        spec.execution_role_arn,
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def start_timeout(settings: Settings, spec: LaunchSpec) -> float:
    """How long the agent may take to start a container: stopping a previous run, fetching its
    model data on the node, launching."""
    fetch = spec.model_fetch.timeout_s if spec.model_fetch is not None else 0.0
    return settings.stop_grace_s + fetch + CALL_TIMEOUT_S


def _generation(name: str, key: str) -> int | None:
    prefix = f"{key}/g"
    if not name.startswith(prefix) or not name[len(prefix) :].isdigit():
        return None
    return int(name[len(prefix) :])
