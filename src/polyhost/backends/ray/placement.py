"""Where an instance goes on the Ray cluster: one placement group, one bundle, one node.

The bundle holds the sum of the CPU and memory of the instance's containers, `STRICT_PACK`, so
the containers share a node as they share a machine on SageMaker. The group is detached (it
outlives the server, like its agent) and named after the instance.

Spreading the instances of one variant: Ray has no anti-affinity between placement groups, so
polyhost places them one at a time and pins each, through the `node:<address>` resource every
Ray node carries (1 unit; the bundle asks for a sliver of it), to a node that has room and holds
no instance of that variant yet, the freest first. Only when no such node can take it does the
instance go to any node with room (a pinned try that Ray does not grant within PINNED_WAIT_S
moves on to the next node). With 3 nodes that each have room, 3 instances land on 3 nodes.

A node polyhost saw lost (`exclude`) is never a candidate, even while Ray still counts it alive:
Ray's own health checks take their time (about 30 s with its defaults), polyhost's agents tell
within a second, and a placement pinned to a dead node would only wait for nothing.

Failing fast: before anything is reserved, the instance is checked against the nodes that are
alive. An instance larger than every node can never be placed: that fails at once. Otherwise
the wait for room is bounded by `--ray-placement-timeout`. Either failure says what was asked
and what the cluster has.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from polyhost.backends.base import PlacementError, ResourceLimits
from polyhost.backends.cgroups import format_bytes
from polyhost.backends.ray.calls import ray_call

log = logging.getLogger("polyhost.backends.ray")

PINNED_WAIT_S = 5.0
NODE_SLIVER = 0.001  # of a node's `node:<address>` resource: pins without excluding others


@dataclass(frozen=True)
class Room:
    cpus: float
    memory_bytes: int
    containers: int

    def describe(self) -> str:
        return f"{self.cpus:g} CPU and {_size(self.memory_bytes)} of memory"


@dataclass(frozen=True)
class NodeRoom:
    address: str
    node_id: str
    total_cpus: float
    total_memory: int
    free_cpus: float
    free_memory: int

    def could_hold(self, room: Room) -> bool:
        return self.total_cpus >= room.cpus and self.total_memory >= room.memory_bytes

    def holds_now(self, room: Room) -> bool:
        return self.free_cpus >= room.cpus and self.free_memory >= room.memory_bytes


def room_of(limits: Iterable[ResourceLimits], default_cpus: float, default_memory: int) -> Room:
    """The sum over an instance's containers; a container without a limit counts the default."""
    cpus = 0.0
    memory = 0
    count = 0
    for limit in limits:
        cpus += limit.cpus if limit.cpus is not None else default_cpus
        memory += limit.memory_bytes if limit.memory_bytes is not None else default_memory
        count += 1
    return Room(round(cpus, 4), memory, count)


def cluster_rooms(ray: Any) -> list[NodeRoom]:
    """The alive nodes, with their total and (as far as Ray's view goes) free resources."""
    free: dict[str, dict[str, float]] = {}
    with contextlib.suppress(Exception):
        free = ray._private.state.available_resources_per_node()
    rooms: list[NodeRoom] = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        total = node.get("Resources", {})
        available = free.get(node["NodeID"], total)
        rooms.append(
            NodeRoom(
                address=node["NodeManagerAddress"],
                node_id=node["NodeID"],
                total_cpus=float(total.get("CPU", 0.0)),
                total_memory=int(total.get("memory", 0)),
                free_cpus=float(available.get("CPU", 0.0)),
                free_memory=int(available.get("memory", 0)),
            )
        )
    return rooms


def describe_cluster(rooms: list[NodeRoom]) -> str:
    if not rooms:
        return "the Ray cluster has no alive node"
    total_cpus = sum(r.total_cpus for r in rooms)
    free_cpus = sum(r.free_cpus for r in rooms)
    total_memory = sum(r.total_memory for r in rooms)
    free_memory = sum(r.free_memory for r in rooms)
    largest = max(rooms, key=lambda r: (r.total_cpus, r.total_memory))
    freest = max(rooms, key=lambda r: (r.free_cpus, r.free_memory))
    return (
        f"the Ray cluster has {len(rooms)} alive node(s) with {free_cpus:g} of {total_cpus:g} "
        f"CPU and {_size(free_memory)} of {_size(total_memory)} of memory free; its largest "
        f"node has {largest.total_cpus:g} CPU and {_size(largest.total_memory)} of memory, its "
        f"freest {freest.free_cpus:g} CPU and {_size(freest.free_memory)} free"
    )


async def reserve(
    ray: Any,
    room: Room,
    description: str,
    name: str,
    *,
    avoid: set[str],
    exclude: set[str],
    timeout_s: float,
    prefer: str | None = None,
) -> tuple[Any, str | None]:
    """A ready placement group for `room` and the node it is on (None when Ray does not say):
    on `prefer` if it has room, else preferring nodes not in `avoid`, never pinned to a node in
    `exclude`; PlacementError."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    rooms = [r for r in await ray_call(cluster_rooms, ray) if r.address not in exclude]
    asked = (
        f"{description} asks for {room.describe()} on one node "
        f"(the sum over its {room.containers} container(s))"
    )
    if not any(r.could_hold(room) for r in rooms):
        raise PlacementError(f"{asked}, but no node is that large: {describe_cluster(rooms)}.")
    candidates = sorted(
        (r for r in rooms if r.holds_now(room)),
        key=lambda r: (r.address != prefer, r.address in avoid, -r.free_cpus, -r.free_memory),
    )
    for candidate in candidates:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        bundle = _bundle(room) | {f"node:{candidate.address}": NODE_SLIVER}
        group = await ray_call(_create, ray, bundle, name)
        if await _ready(group, min(PINNED_WAIT_S, remaining)):
            return group, candidate.address
        await ray_call(_remove, ray, group)
        log.info("%s did not fit on node %s now; trying another", description, candidate.address)
    remaining = deadline - loop.time()
    group = await ray_call(_create, ray, _bundle(room), name)
    if remaining > 0 and await _ready(group, remaining):
        return group, await ray_call(_node_of, ray, group, rooms)
    await ray_call(_remove, ray, group)
    rooms = await ray_call(cluster_rooms, ray)
    raise PlacementError(
        f"{asked}, and the cluster had no room for it within {timeout_s:g} seconds: "
        f"{describe_cluster(rooms)}."
    )


def _node_of(ray: Any, group: Any, rooms: list[NodeRoom]) -> str | None:
    """The address of the node holding the group's bundle."""
    try:
        node_ids = ray.util.placement_group_table(group).get("bundles_to_node_id") or {}
    except Exception:
        return None
    addresses = {r.node_id: r.address for r in rooms}
    return next((addresses.get(n) for n in node_ids.values() if n in addresses), None)


def find_group(ray: Any, name: str) -> Any:
    """The detached placement group named `name` in this namespace, or None."""
    try:
        return ray.util.get_placement_group(name)
    except Exception:
        return None


def groups_named(ray: Any, prefix: str) -> list[tuple[str, Any]]:
    """(name, group) of every placement group not removed whose name starts with `prefix`."""
    found: list[tuple[str, Any]] = []
    for info in ray.util.placement_group_table().values():
        name = info.get("name") or ""
        if name.startswith(prefix) and info.get("state") != "REMOVED":
            group = find_group(ray, name)
            if group is not None:
                found.append((name, group))
    return found


def _bundle(room: Room) -> dict[str, float]:
    return {"CPU": room.cpus, "memory": float(room.memory_bytes)}


def _create(ray: Any, bundle: dict[str, float], name: str) -> Any:
    return ray.util.placement_group(
        [bundle], strategy="STRICT_PACK", name=name, lifetime="detached"
    )


def _remove(ray: Any, group: Any) -> None:
    with contextlib.suppress(Exception):
        ray.util.remove_placement_group(group)


async def _ready(group: Any, timeout_s: float) -> bool:
    try:
        await asyncio.wait_for(asyncio.wrap_future(group.ready().future()), timeout_s)
    except TimeoutError:
        return False
    return True


def _size(count: int) -> str:
    if count >= 1 << 20 and count % (1 << 20) == 0:
        return format_bytes(count)
    return f"{count / (1 << 20):.0f}MiB"
