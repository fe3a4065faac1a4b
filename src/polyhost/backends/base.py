"""The interface every backend implements: start a container from a spec, stop it, observe it.

The deployer and the router only ever see `Backend` and `ContainerHandle`; whether a container
is a child process or an OCI container is the backend's business. What only some backends have
is an optional protocol of its own, asked for by `isinstance`, never probed by attribute name:
`InstancePlacer` (a backend that places instances), `NodePlaced` (a handle of a container on
another machine), `ModelDirMounted` (a handle whose container sees its model folder at a path
of its own) and `ModelsShipped` (a handle whose container's node gets each model it loads).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol, TypeGuard, runtime_checkable


@dataclass(frozen=True)
class ResourceLimits:
    memory_bytes: int | None = None
    cpus: float | None = None


@runtime_checkable
class ModelFetch(Protocol):
    """Model data a container's own machine fetches (for a backend whose containers run on other
    machines: `s3://` and `https://` are fetched by the node, not the server). The deploy layer
    provides it; it must pickle, since it travels to the node."""

    @property
    def source(self) -> str:
        """What identifies the model (its URL, credentials never included)."""
        ...

    @property
    def timeout_s(self) -> float:
        """The most the fetch may take (the variant's ModelDataDownloadTimeoutInSeconds)."""
        ...

    def __call__(self, cache_root: Path) -> Path:
        """Fetch (or find in the cache under `cache_root`) and extract; the model's folder.
        Raises with a message fit for a FailureReason."""
        ...


@dataclass(frozen=True)
class ContainerUser:
    """The uid and gid (equal, no supplementary groups) an instance's processes run as, when
    the server confines containers to users of their own (`confinement.py`)."""

    uid: int
    gid: int


class InstanceNetwork(Protocol):
    """The network the containers of one instance share when the server isolates them: they
    reach each other on loopback, and only the server reaches them, through `connect`."""

    @property
    def description(self) -> str: ...

    async def connect(self, host: str, port: int) -> socket.socket:
        """A socket connected to `host:port` inside the instance's network (raises OSError)."""
        ...

    async def close(self) -> None:
        """Let go of it once the instance's containers are stopped."""
        ...


@runtime_checkable
class NetworkIsolator(Protocol):
    """A backend that can give each instance a network of its own (process: a network
    namespace; Docker: a pause container's). Ray does not implement it."""

    async def open_network(self, instance_key: str) -> InstanceNetwork:
        """A new network for the instance `instance_key` names; raises ContainerStartError."""
        ...


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one container."""

    container_id: str  # unique and filesystem-safe, e.g. "ep1.AllTraffic.0.pytorch-mnist"
    image: str
    environment: Mapping[str, str]
    model_dir: Path | None  # extracted ModelDataUrl, seen by the container as its model dir
    host: str  # loopback address the container binds
    port: int  # SAGEMAKER_BIND_TO_PORT
    safe_port_range: tuple[int, int]  # SAGEMAKER_SAFE_PORT_RANGE, inclusive
    log_path: Path
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    # The container's working folder; the log file's folder when not given.
    work_dir: Path | None = None
    # The model's ExecutionRoleArn: the container gets that role's credentials, if mapped.
    execution_role_arn: str | None = None
    # The instance (`InstanceRequest.key`) the container belongs to, for backends that place
    # instances (`InstancePlacer`); None elsewhere.
    instance_key: str | None = None
    # Model data the container's node fetches itself (`model_dir` is then None).
    model_fetch: ModelFetch | None = None
    # The instance's own network (isolation on; from the backend's `open_network`), None for
    # the host's; and the user its processes run as, None for the server's.
    network: InstanceNetwork | None = None
    user: ContainerUser | None = None


@dataclass(frozen=True)
class ContainerStats:
    cpu_percent: float  # % of one CPU, summed over the container's processes (100 = one core)
    rss_bytes: int
    memory_percent: float


class ContainerHandle(Protocol):
    """A started container."""

    @property
    def container_id(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def limits_applied(self) -> str:
        """Human-readable account of which resource limits the OS actually enforces."""
        ...

    def exit_code(self) -> int | None:
        """None while running; the exit status (negative = signal) once it has stopped."""
        ...

    async def stop(self, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after `grace_s`; returns once it is gone."""
        ...

    def stats(self) -> ContainerStats | None:
        """CPU and memory now, or None when it cannot be read (e.g. already stopped)."""
        ...

    def listens_on(self, port: int) -> bool | None:
        """Whether the container itself listens on `port`; None when the backend cannot tell."""
        ...


class ImageNotFound(Exception):
    """The image is not known to this backend; the message names the known images."""


class ContainerStartError(Exception):
    """The container's program could not be launched; the message says why (no secrets)."""


class Backend(Protocol):
    """What the deployer and the server ask of any backend (process, Docker, Ray)."""

    def knows_image(self, image: str) -> bool: ...

    def image_limits(self, image: str) -> ResourceLimits:
        """The resource limits configured for every container of `image`."""
        ...

    def known_images(self) -> list[str]: ...

    async def start(self, spec: LaunchSpec) -> ContainerHandle: ...

    async def reap_orphans(self, grace_s: float) -> list[str]:
        """Stop containers a killed predecessor left behind; returns their ids. Called once at
        start, before reconciling; never touches containers this backend did not start."""
        ...


@dataclass(frozen=True)
class InstanceRequest:
    """One instance of a production variant, to be placed as a unit before its containers start.

    `key` names the instance across server runs (endpoint, revision, variant, instance id), so a
    restarted server finds what its predecessor placed; `group` is what instances are spread by
    (the variant of one revision): two instances of one group go to different nodes when the
    cluster allows. `limits` holds one entry per container of the instance."""

    key: str
    group: str
    description: str  # for messages: "instance i-0 of production variant AllTraffic"
    limits: tuple[ResourceLimits, ...]


class PlacementError(Exception):
    """The instance cannot be placed; the message says what was asked and what the cluster has."""


@runtime_checkable
class InstancePlacer(Protocol):
    """A backend that places each instance as a unit (Ray: a placement group on one node).

    The group starter places an instance before starting its containers, passes the instance's
    key in each `LaunchSpec.instance_key`, and releases the instance once they are stopped.
    Backends that run everything on the server's machine (process, Docker) do not implement it.
    """

    async def place_instance(self, request: InstanceRequest) -> str:
        """Reserve room for the instance; returns where it runs (the node, for people).
        Raises PlacementError."""
        ...

    async def release_instance(self, key: str) -> None:
        """Free what `place_instance` reserved; its containers are stopped already."""
        ...

    async def release_unclaimed(self) -> list[str]:
        """After a restart, once every wanted endpoint was started again: stop the instances
        the previous server run left that nothing claimed; returns their keys."""
        ...


@runtime_checkable
class NodePlaced(Protocol):
    """A handle of a container on another machine (Ray): where it runs, whether it was lost
    with that machine, and whether a restarted server found it running already.

    Optional: handles of containers on the server's machine (process, Docker) do not have it,
    and the deploy layer asks through `node_of`, `lost_reason` and `is_adopted`, which answer
    for every handle."""

    @property
    def node(self) -> str:
        """The node's address: where the routes call the container, and what messages name."""
        ...

    def lost(self) -> str | None:
        """Why the container is gone with its node (names the node), or None while it is not."""
        ...

    @property
    def adopted(self) -> bool:
        """True when the container already ran when it was started: a restarted server took it
        over from the node's agent, so its start took no setup time."""
        ...


@runtime_checkable
class ModelDirMounted(Protocol):
    """A handle whose container sees its `LaunchSpec.model_dir` at a path of its own (Docker: a
    read-only bind mount), not at the server's path.

    What the server tells such a container about files in that folder (a multi-model
    container's `POST /models` url) must be the container's path, and the files must be in
    that folder: the container sees nothing else of the server's disk. A handle without it
    (process) shares the server's paths. Optional, asked for by `isinstance`."""

    @property
    def container_model_dir(self) -> PurePosixPath:
        """Where `LaunchSpec.model_dir` appears inside the container."""
        ...


class ModelStagingFailed(Exception):
    """A model could not be put where its container sees it; the message says why (no secrets),
    fit to follow "Could not put model M into the model folder of container C: "."""


class NodeModelStaging(Protocol):
    """Puts the models a multi-model container loads onto its node, and removes them.

    What a `ModelsShipped` handle offers; it fits the router's `ModelStager` (tokens are the
    names the node gave the models' folders). Both calls are awaited on the server's event
    loop, so they block nothing while a model travels."""

    async def stage(self, folder: Path, target: str) -> tuple[str, str]:
        """Ship the model extracted in `folder` (on the server) into a folder of its own in
        the container's model folder on its node: (a token for `remove`, that folder's path
        as the container sees it). Raises ModelStagingFailed, leaving nothing behind."""
        ...

    async def remove(self, token: str) -> None:
        """Remove one staged model's folder from the node (nothing else; one already gone is
        no error). Raises ModelStagingFailed when the node cannot be asked."""
        ...


@runtime_checkable
class ModelsShipped(Protocol):
    """A handle whose container runs on a machine that does not see the server's disk (Ray),
    so a multi-model container's models must be shipped to its node before it loads them.

    Optional, asked for by `isinstance`; the staging it gives follows the container across
    restarts (a restarted container may run on another node)."""

    def model_staging(self) -> NodeModelStaging: ...


# Handle class → whether it is NodePlaced. A runtime protocol check looks up every member
# (microseconds), and `lost_reason` is asked at every supervisor poll of every container; the
# members are properties and methods, so a handle's class decides.
_NODE_PLACED: dict[type, bool] = {}


def is_node_placed(handle: ContainerHandle) -> TypeGuard[NodePlaced]:
    """Whether the handle's container runs on another machine (its handle is `NodePlaced`)."""
    kind = type(handle)
    placed = _NODE_PLACED.get(kind)
    if placed is None:
        placed = _NODE_PLACED[kind] = isinstance(handle, NodePlaced)
    return placed


def node_of(handle: ContainerHandle) -> str | None:
    """Where a container runs when that is another machine (Ray: the node's address), else None."""
    return handle.node if is_node_placed(handle) else None


def lost_reason(handle: ContainerHandle) -> str | None:
    """Why a remote container is gone with its node (names the node), or None while it is not."""
    return handle.lost() if is_node_placed(handle) else None


def is_adopted(handle: ContainerHandle) -> bool:
    """True for a remote container a restarted server took over running (see `NodePlaced`)."""
    return is_node_placed(handle) and handle.adopted
