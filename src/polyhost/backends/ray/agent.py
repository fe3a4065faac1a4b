"""The agent of one instance on a Ray node: runs the instance's containers with the process backend.

One detached, named actor per instance, scheduled in the instance's placement group, so it
lives on the node that holds the instance's reservation and outlives the server that made it
(a restarted server finds it by name and adopts its containers). It is a plain class here; the
server makes it a Ray actor (`backend`), which keeps this module free of Ray.

What it does on its node:
- starts each container with `ProcessBackend` (same environment, limits, process groups,
  cgroups, pid files and orphan reaping as on the server's machine), bound to the node's own
  address on a port block it finds free there;
- unpacks the model data the server shipped (`models`), once per node by content hash, or
  fetches `s3://`/`https://` model data itself (`LaunchSpec.model_fetch`: the server's artifact
  code and limits, with the node's own credentials), into the node's artifact cache;
- for a multi-model container, unpacks each model the server ships it into a folder of its own
  in the container's model folder (`stage_model`), and removes it on unload (`unstage_model`),
  when the container starts again and when it stops: the node keeps only loaded models;
- reports, when polled, each container's exit code, whether it listens on its port, its CPU and
  memory, and the next slice of its log (`logs`).

A container asked for again with the same id and the same fingerprint (image, environment,
model, limits, role) while it runs is not restarted: that is how a restarted server adopts it.
Another fingerprint stops the running one and starts the new one.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from polyhost.backends.base import ContainerStats, LaunchSpec
from polyhost.backends.process.backend import ProcessBackend
from polyhost.backends.process.container import ProcessContainer
from polyhost.backends.ray import models as ray_models
from polyhost.backends.ray.log_shipping import read_slice
from polyhost.backends.registry import ImageRegistry
from polyhost.settings import Settings

# Port blocks on the node: the first port serves, the rest is SAGEMAKER_SAFE_PORT_RANGE.
PORT_FIRST = 21000
PORT_LAST = 30999
PORT_BLOCK = 10
# The most log bytes `stop` ships with its answer (what the container wrote last).
FINAL_LOG_MAX_BYTES = 1024 * 1024


def node_root(namespace: str) -> Path:
    """This server's folder on a node: instances' containers and the model cache."""
    return Path(tempfile.gettempdir()) / f"polyhost-ray-{os.getuid()}" / namespace


@dataclass(frozen=True)
class AgentLaunch:
    """A container to start on the node. `model` is `[ObjectRef]` (a list, so Ray passes the
    reference rather than the bytes: the agent fetches them only when its node lacks the
    model) or None when the container has no model data."""

    spec: LaunchSpec
    fingerprint: str
    model_digest: str | None
    model: list[Any] | None


@dataclass(frozen=True)
class Started:
    host: str
    port: int
    pid: int
    limits_applied: str
    adopted: bool


@dataclass(frozen=True)
class ContainerState:
    exit_code: int | None
    listens: bool | None
    stats: ContainerStats | None
    log: bytes


@dataclass
class _Entry:
    handle: ProcessContainer
    fingerprint: str
    log_path: Path
    listens: bool | None = None
    # A multi-model container's own model folder, where its models are staged (None: any other).
    models_dir: Path | None = None


class InstanceAgent:
    def __init__(self, settings: Settings, images: ImageRegistry, key: str, namespace: str) -> None:
        import ray  # only ever built on a Ray worker

        self._ip: str = ray.util.get_node_ip_address()
        self._node_id: str = ray.get_runtime_context().get_node_id()
        root = node_root(namespace)
        self._dir = root / "instances" / key
        self._models = root / "models"
        self._artifacts = root / "artifacts"
        self._settings = replace(settings, state_dir=self._dir)
        self._backend = ProcessBackend(self._settings, images)
        self._entries: dict[str, _Entry] = {}
        self._shipped: dict[str, int] = {}
        self._staging: set[str] = set()  # models' folders being unpacked (`stage_model`)
        self._withdrawn: set[str] = set()  # of those, the ones the server gave up on
        self._ports: set[int] = set()
        self._reaped = False
        self._lock = asyncio.Lock()

    async def describe(self) -> tuple[str, str, int]:
        """(node address, node id, the agent's pid)."""
        return self._ip, self._node_id, os.getpid()

    async def start(self, launch: AgentLaunch) -> Started:
        async with self._lock:
            return await self._start(launch)

    async def _start(self, launch: AgentLaunch) -> Started:
        container_id = launch.spec.container_id
        entry = self._entries.get(container_id)
        if entry is not None:
            handle = entry.handle
            if entry.fingerprint == launch.fingerprint and handle.exit_code() is None:
                return Started(handle.host, handle.port, handle.pid, handle.limits_applied, True)
            await handle.stop(self._settings.stop_grace_s)
            self._forget(container_id)
        if not self._reaped:
            # What a previous agent of this instance left on this node (its worker was killed).
            await self._backend.reap_orphans(self._settings.stop_grace_s)
            self._reaped = True
        folder = self._dir / container_id
        model_dir = await self._model_dir(launch, folder)
        models_dir = model_dir if _stages_models(launch) else None
        if models_dir is not None:  # it starts with no model: what a previous run staged goes
            await asyncio.to_thread(ray_models.clear_staged, models_dir)
        port = self._port_block()
        log_path = folder / "container.log"
        if container_id not in self._shipped:  # ship only what this run writes
            self._shipped[container_id] = _log_end(log_path)
        spec = replace(
            launch.spec,
            host=self._ip,
            port=port,
            safe_port_range=(port + 1, port + PORT_BLOCK - 1),
            log_path=log_path,
            work_dir=folder,
            model_dir=model_dir,
            instance_key=None,
        )
        try:
            started = await self._backend.start(spec)
        except BaseException:
            self._ports.discard(port)
            raise
        assert isinstance(started, ProcessContainer)
        self._entries[container_id] = _Entry(
            started, launch.fingerprint, log_path, None, models_dir
        )
        return Started(started.host, started.port, started.pid, started.limits_applied, False)

    async def _model_dir(self, launch: AgentLaunch, folder: Path) -> Path:
        fetch = launch.spec.model_fetch
        if fetch is not None:  # s3:// or https://: this node fetches it, into its own cache
            return await asyncio.to_thread(fetch, self._artifacts)
        if launch.model_digest is None or launch.model is None:
            own = folder / "model"
            own.mkdir(parents=True, exist_ok=True)
            return own
        found = ray_models.cached(self._models, launch.model_digest)
        if found is not None:
            return found
        data: bytes = await launch.model[0]
        return await asyncio.to_thread(ray_models.unpack, self._models, launch.model_digest, data)

    def _port_block(self) -> int:
        """A port block whose first port is free on this node's address now."""
        blocks = (PORT_LAST - PORT_FIRST + 1) // PORT_BLOCK
        start = random.randrange(blocks)
        for index in range(blocks):
            port = PORT_FIRST + ((start + index) % blocks) * PORT_BLOCK
            if port in self._ports:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                try:
                    probe.bind((self._ip, port))
                except OSError:
                    continue
            self._ports.add(port)
            return port
        raise RuntimeError(f"no free port block left on {self._ip}")

    def _forget(self, container_id: str) -> None:
        entry = self._entries.pop(container_id, None)
        if entry is not None:
            self._ports.discard(entry.handle.port)

    async def poll(self, with_stats: bool, log_limit: int) -> dict[str, ContainerState]:
        """Every container's state now, with the next slice of its log."""
        states: dict[str, ContainerState] = {}
        for container_id, entry in list(self._entries.items()):
            handle = entry.handle
            code = handle.exit_code()
            if code is None and entry.listens is not True:
                entry.listens = handle.listens_on(handle.port)
            states[container_id] = ContainerState(
                exit_code=code,
                listens=entry.listens,
                stats=handle.stats() if with_stats and code is None else None,
                log=self._ship(container_id, entry.log_path, log_limit),
            )
        return states

    def _ship(self, container_id: str, log_path: Path, limit: int) -> bytes:
        position = self._shipped.get(container_id, 0)
        data, position = read_slice(log_path, self._settings.log_backups, position, limit)
        self._shipped[container_id] = position
        return data

    async def stop(self, container_id: str, grace_s: float) -> bytes:
        """Stop one container (its staged models go with it); returns the rest of its log
        (bounded)."""
        entry = self._entries.get(container_id)
        if entry is None:
            return b""
        await entry.handle.stop(grace_s)
        self._forget(container_id)
        if entry.models_dir is not None:
            await asyncio.to_thread(ray_models.clear_staged, entry.models_dir)
        return self._ship(container_id, entry.log_path, FINAL_LOG_MAX_BYTES)

    async def stage_model(self, container_id: str, name: str, digest: str, model: list[Any]) -> str:
        """Unpack one model the server shipped (`model`: `[ObjectRef]` of `ray_models.pack`'s
        tar) into the folder `name` (`ray_models.staged_name`) of the running multi-model
        container's model folder; the model's path, which its `POST /models` names.

        A container stopped or started again meanwhile had its model folder emptied, and a
        stage the server withdrew (`unstage_model` while it ran) is not wanted: either way the
        model unpacked goes too, and the call fails."""
        entry = self._stageable(container_id)
        assert entry.models_dir is not None
        self._staging.add(name)
        try:
            data: bytes = await model[0]
            path = await asyncio.to_thread(
                ray_models.unpack_staged, entry.models_dir, name, digest, data
            )
            del data
            withdrawn = name in self._withdrawn
            gone = (
                self._entries.get(container_id) is not entry or entry.handle.exit_code() is not None
            )
            if withdrawn or gone:
                await asyncio.to_thread(ray_models.remove_staged, entry.models_dir, name)
                raise RuntimeError(
                    f"model folder {name} was withdrawn while it was being unpacked"
                    if withdrawn
                    else f"container {container_id} stopped while its model was being unpacked"
                )
            return str(path)
        finally:
            self._staging.discard(name)
            self._withdrawn.discard(name)

    async def unstage_model(self, container_id: str, name: str) -> None:
        """Remove one model `stage_model` unpacked, or withdraw one it is unpacking (one
        already gone, with its container's stop or restart, is no error)."""
        if name in self._staging:
            self._withdrawn.add(name)
        entry = self._entries.get(container_id)
        models_dir = entry.models_dir if entry is not None else None
        if models_dir is None:
            models_dir = self._dir / container_id / "model"  # stopped: emptied already
        await asyncio.to_thread(ray_models.remove_staged, models_dir, name)

    def _stageable(self, container_id: str) -> _Entry:
        entry = self._entries.get(container_id)
        if entry is None or entry.handle.exit_code() is not None:
            raise RuntimeError(f"container {container_id} is not running on {self._ip}")
        if entry.models_dir is None:
            raise RuntimeError(f"container {container_id} on {self._ip} is not a multi-model one")
        return entry

    async def stop_all(self, grace_s: float) -> list[str]:
        ids = list(self._entries)
        await asyncio.gather(*(self.stop(i, grace_s) for i in ids), return_exceptions=True)
        return ids


def _stages_models(launch: AgentLaunch) -> bool:
    """Whether the container gets its models staged by this agent: a multi-model one, whose
    model folder is its own (no model data of its own: its models come one by one)."""
    spec = launch.spec
    return (
        ray_models.serves_many_models(spec.environment)
        and launch.model_digest is None
        and spec.model_fetch is None
    )


def _log_end(path: Path) -> int:
    """The absolute position after the last byte of the log (0 when there is none)."""
    from polyhost.logs.index import read_index_base

    try:
        size = path.stat().st_size
    except OSError:
        return 0
    return (read_index_base(path) or 0) + size
