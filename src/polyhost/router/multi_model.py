"""Multi-model endpoints, the platform side: TargetModel → a model loaded in the container.

A `Mode: MultiModel` container starts with no model. The first InvokeEndpoint naming a
TargetModel fetches `prefix + TargetModel` through the artifact store (its limits, cache and
host rules; concurrent fetches of one URL run once), asks the container to load the extracted
folder (`POST /models {"model_name", "url"}`, SageMaker's multi-model API), then invokes it
(`POST /models/{name}/invoke`). Later calls go straight to the invocation.

Per container, `MultiModelContainer` keeps the models it has loaded in least-recently-used
order and the loads in flight: concurrent first calls for one model share one load. A 507 from
the container (the load would pass its memory budget) unloads the least recently used models
that no invocation is using (`DELETE /models/{name}`), one at a time, and asks again; so do more
than `max_loaded` models. ModelCacheSetting Disabled unloads a model once no invocation uses it.
A model the container no longer has (it restarted) answers 404 and is loaded again, once.

A container that does not see the server's files gets each model put where it sees it first,
by a `ModelStager`: on Docker (`ModelDirMounted`) into its own model folder (`ModelStaging`: the
artifact store's extracted files hard-linked, copied where a link cannot be made), which it
sees read-only at its own path; on Ray (`ModelsShipped`) onto its node, by the instance's agent
(`backends/ray/staging.py`). The load names the path the container sees, and the model's copy
goes once it is unloaded or the container restarts. On the process backend the container
reads the artifact store's folder itself.

An invocation waits for its model's load at most `wait_s` (60 s by default): past that it gets a
retryable 429 ModelNotReadyException while the load goes on, bounded itself by `load_timeout_s`.

Each container keeps SageMaker's multi-model series in `metrics` (`MultiModelCounters`, hung on
the route's counters so the recorder and Prometheus find them): per invocation ModelCacheHit
and, when it waited, ModelLoadingWaitTime; per load ModelDownloadingTime and ModelLoadingTime;
per unload ModelUnloadingTime; and LoadedModelCount, kept equal to the table's size.

Errors, as SageMaker words them where it does: no TargetModel is the caller's error; a
TargetModel that is not a path below the prefix (`modeldata.target`) or has nothing behind it
is the caller's error naming the location; a load the container refuses is a ModelError quoting
its message. The router's own `invoke` calls `invoke_multi_model` for an endpoint whose route
says it is multi-model.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import stat
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote

from polyhost.backends.base import ModelStagingFailed
from polyhost.errors import (
    InvokeValidationError,
    ModelError,
    ModelNotReadyException,
    ServiceError,
    ServiceUnavailable,
)
from polyhost.metrics.series import MultiModelCounters
from polyhost.modeldata.errors import ArtifactError, ArtifactMissing, redact_url
from polyhost.modeldata.target import TargetModelRefused, target_url
from polyhost.router.upstream import (
    ContainerPool,
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeout,
)

if TYPE_CHECKING:
    from polyhost.router.router import InvokeRequest, InvokeResult, Router
    from polyhost.router.table import ContainerRoute, EndpointRoute, ReplicaRoute, VariantRoute

log = logging.getLogger("polyhost.router.multi_model")

MULTI_MODEL_ENV = "SAGEMAKER_MULTI_MODEL"
TARGET_MODEL_HEADER = b"X-Amzn-SageMaker-Target-Model"
MAX_CONTROL_ANSWER = 64 * 1024  # what a load or unload answer may hold
MAX_MESSAGE = 4096
MAX_LOADS_IN_FLIGHT = 32  # per container: loads past it are refused with a retryable 503
CONTROL_TIMEOUT_S = 30.0  # an unload


class Fetcher(Protocol):
    """The artifact store's `fetch` (`modeldata.store.ArtifactStore`)."""

    async def fetch(self, url: str, timeout_s: float) -> Path: ...


Connect = Callable[[str, int], Awaitable[socket.socket]]


@dataclass(frozen=True)
class MultiModelLimits:
    wait_s: float = 60.0
    load_timeout_s: float = 360.0
    download_timeout_s: float = 3600.0
    max_loaded: int = 1000


@dataclass
class _Model:
    inflight: int = 0
    staged: object | None = None  # its copy where the container sees it (the stager's token)


_Token = TypeVar("_Token")


class ModelStager(Protocol[_Token]):
    """Puts a model where a container that does not see the server's files finds it, and takes
    it away again: Docker's mounted folder (`FolderStager`), a Ray node (the Ray handle's
    `model_staging`). Awaited on the event loop: an implementation does its blocking work off it.

    Each load gets a copy of its own (a unique name), so removing one never races a new load of
    the same model; `_Token` is what names that copy for `remove`."""

    async def stage(self, folder: Path, target: str) -> tuple[_Token, str]:
        """Put the model extracted in `folder` (the artifact store's) where the container sees
        it: (the token to remove it with, the model's folder as the container sees it). Raises
        OSError or ModelStagingFailed, having removed what it made."""
        ...

    async def remove(self, token: _Token) -> None:
        """Remove one staged model (nothing else). Raises OSError or ModelStagingFailed."""
        ...


# A link across file systems, or one the kernel's hard-link protection refuses: copy instead.
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.EACCES, errno.EMLINK, errno.ENOTSUP})


@dataclass(frozen=True)
class ModelStaging:
    """A container's own model folder: `host_dir` on the server, `container_dir` in the container
    (read-only). The container sees no other file of the server, so each model it loads is put
    there first, as SageMaker's contract lays them out (`<container_dir>/<name>/model`).

    Files are hard links to the artifact store's extracted (read-only) files, which costs no
    space and no copying; a copy where the two folders are on different file systems. Symbolic
    links are kept as they are: the archive rules allow only links that stay inside the model,
    and so they stay inside its copy. Each load gets a folder of its own (a unique name), so an
    unload that removes one never races a new load of the same model."""

    host_dir: Path
    container_dir: PurePosixPath

    def stage(self, folder: Path, target: str) -> tuple[Path, str]:
        """Put the model in `folder` into the container's folder; (the copy's root on the
        server, to remove it later; the model's folder as the container sees it). Raises
        OSError, having removed what it made."""
        digest = hashlib.sha256(target.encode("utf-8")).hexdigest()[:24]
        name = f"{digest}-{secrets.token_hex(4)}"
        root = self.host_dir / name
        try:
            _copy_tree(folder, root / "model")
        except BaseException:
            self.remove(root)
            raise
        return root, str(self.container_dir / name / "model")

    def remove(self, staged: Path) -> None:
        """Remove one staged model (a folder this staging made; nothing else is touched)."""
        if staged.parent != self.host_dir:
            raise ValueError(f"{staged} is not a model folder of {self.host_dir}")
        shutil.rmtree(staged, ignore_errors=True)


def _copy_tree(source: Path, destination: Path) -> None:
    """`source`'s folders, files (hard-linked, or copied) and symbolic links under
    `destination`, which must not exist. Anything else (a device, a FIFO) is left out."""
    destination.mkdir(parents=True)
    for folder, dirs, files in os.walk(source):
        relative = Path(folder).relative_to(source)
        target = destination / relative
        for name in [*dirs, *files]:
            origin = Path(folder, name)
            info = origin.lstat()
            if stat.S_ISLNK(info.st_mode):
                os.symlink(os.readlink(origin), target / name)
            elif stat.S_ISDIR(info.st_mode):
                (target / name).mkdir()
            elif stat.S_ISREG(info.st_mode):
                _link_or_copy(origin, target / name)


def _link_or_copy(origin: Path, target: Path) -> None:
    try:
        os.link(origin, target, follow_symlinks=False)
    except OSError as error:
        if error.errno not in _NO_LINK:
            raise
        shutil.copyfile(origin, target, follow_symlinks=False)
        shutil.copymode(origin, target, follow_symlinks=False)


@dataclass(frozen=True)
class FolderStager:
    """`ModelStaging` as a `ModelStager`: its links, copies and removals on a thread, never on
    the event loop (a large model's tree takes a while to link, longer to copy)."""

    staging: ModelStaging

    async def stage(self, folder: Path, target: str) -> tuple[Path, str]:
        return await asyncio.to_thread(self.staging.stage, folder, target)

    async def remove(self, token: Path) -> None:
        await asyncio.to_thread(self.staging.remove, token)


async def _remove_staged(staging: ModelStager[Any] | None, tokens: list[Any], owner: str) -> None:
    """Remove staged models, each failure only logged: a copy left behind is its node's or
    folder's to clear (a restart or stop of the container), not a reason to fail a call."""
    if staging is None:
        return
    for token in tokens:
        try:
            await staging.remove(token)
        except (OSError, ValueError, ModelStagingFailed) as error:
            log.warning("could not remove a model of container %s: %s", owner, error)


class LoadFailed(Exception):
    """A load ended without the model loaded; `error` is what its callers get."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(error.message)
        self.error = error


class MultiModelContainer:
    """The models one MultiModel container holds, in least-recently-used order, and its loads."""

    def __init__(
        self,
        *,
        hostname: str,
        prefix: str,
        cache: bool,
        fetcher: Fetcher,
        limits: MultiModelLimits,
        address: tuple[str, int],
        connect: Connect | None = None,
        staging: ModelStager[Any] | None = None,
    ) -> None:
        """`staging`: where each model goes first, for a container that does not see the
        server's files (None: it reads the artifact store's folders where they are)."""
        self.hostname = hostname
        self.prefix = prefix
        self.cache = cache
        self._fetcher = fetcher
        self.limits = limits
        self.address = address
        self._connect = connect
        self.staging = staging
        # Asks for the container's restart (its supervisor's), with the reason; set by the
        # deployer once the container is supervised.
        self.on_hung: Callable[[str], None] | None = None
        self.loaded: OrderedDict[str, _Model] = OrderedDict()
        self.pool: ContainerPool | None = None  # the route's pool, set on each invocation
        self._loads: dict[str, asyncio.Task[None]] = {}
        self._removals: set[asyncio.Task[None]] = set()  # staged copies going, not awaited
        self.metrics = MultiModelCounters()

    @property
    def loaded_count(self) -> int:
        return len(self.loaded)

    def holds(self, target: str) -> bool:
        """Whether the model is loaded here, or being loaded (placement counts both)."""
        return target in self.loaded or target in self._loads

    # -- loading ---------------------------------------------------------------------------
    async def ensure_loaded(self, pool: ContainerPool, target: str, endpoint: str) -> _Model:
        """The model `target`, loaded (waiting at most `wait_s` for a load in progress)."""
        model = self.loaded.get(target)
        if model is not None:
            self.loaded.move_to_end(target)
            return model
        task = self._loads.get(target)
        if task is None:
            if len(self._loads) >= MAX_LOADS_IN_FLIGHT:
                raise ServiceUnavailable(
                    f"Container {self.hostname} of endpoint {endpoint} is already loading "
                    f"{MAX_LOADS_IN_FLIGHT} models. Retry shortly."
                )
            task = asyncio.get_running_loop().create_task(self._load(pool, target, endpoint))
            self._loads[target] = task
            task.add_done_callback(functools.partial(self._load_done, target))
        try:
            await asyncio.wait_for(asyncio.shield(task), self.limits.wait_s)
        except TimeoutError:
            raise ModelNotReadyException(
                f"Model {target} is still loading in container {self.hostname} of endpoint "
                f"{endpoint}; it is not ready after {self.limits.wait_s:g} seconds. Retry "
                "shortly."
            ) from None
        except LoadFailed as failed:
            raise failed.error from None
        model = self.loaded.get(target)
        if model is None:  # unloaded again meanwhile (evicted by another load): once more
            return await self.ensure_loaded(pool, target, endpoint)
        self.loaded.move_to_end(target)
        return model

    def _load_done(self, target: str, task: asyncio.Task[None]) -> None:
        if self._loads.get(target) is task:
            del self._loads[target]
        if not task.cancelled():
            task.exception()  # retrieved: waiters that gave up (429) do not leave it unseen

    async def _load(self, pool: ContainerPool, target: str, endpoint: str) -> None:
        try:
            url = target_url(self.prefix, target)
        except TargetModelRefused as refused:
            raise LoadFailed(InvokeValidationError(str(refused))) from None
        metrics = self.metrics
        started = time.perf_counter()
        try:
            folder = await self._fetcher.fetch(url, self.limits.download_timeout_s)
        except ArtifactMissing:
            raise LoadFailed(
                InvokeValidationError(
                    f"Failed to download model data for TargetModel {target}: there is no "
                    f"model data at {redact_url(url)}."
                )
            ) from None
        except ArtifactError as error:
            raise LoadFailed(
                ModelError(f"Failed to download model data for TargetModel {target}: {error}")
            ) from None
        staged, url_in_container = await self._stage(folder, target)
        metrics.downloading.observe((time.perf_counter() - started) * 1e6)
        try:
            loading_s = await self._ask_to_load(pool, target, endpoint, url_in_container)
        except BaseException:  # failed or cancelled: its copy goes, without awaiting
            if staged is not None:
                self._discard([staged])
            raise
        metrics.loading.observe(loading_s * 1e6)
        self.loaded[target] = _Model(staged=staged)
        metrics.loaded = len(self.loaded)
        log.info(
            "model %s loaded into container %s of endpoint %s (%.3f s)",
            target,
            self.hostname,
            endpoint,
            loading_s,
        )

    async def _stage(self, folder: Path, target: str) -> tuple[object | None, str]:
        """(the stager's token of the model's copy, or None; the url the load names)."""
        staging = self.staging
        if staging is None:
            return None, str(folder)
        work = asyncio.ensure_future(staging.stage(folder, target))
        try:
            return await asyncio.shield(work)
        except asyncio.CancelledError:  # the staging goes on: what it makes goes after it
            work.add_done_callback(self._discard_result)
            raise
        except (OSError, ModelStagingFailed) as error:
            log.warning(
                "could not put model %s into the folder of container %s: %s",
                target,
                self.hostname,
                error,
            )
            reason = (error.strerror or error) if isinstance(error, OSError) else error
            raise LoadFailed(
                ModelError(
                    f"Could not put model {target} into the model folder of container "
                    f"{self.hostname}: {str(reason).rstrip('.')}."
                )
            ) from None

    async def _ask_to_load(
        self, pool: ContainerPool, target: str, endpoint: str, url: str
    ) -> float:
        """The container's `POST /models` until it loads, making room on a 507; the seconds
        its load calls took (not the unloads between them). Raises LoadFailed."""
        loading_s = 0.0
        body = json.dumps({"model_name": target, "url": url}).encode()
        while True:
            if len(self.loaded) >= self.limits.max_loaded and not await self._evict_one(endpoint):
                raise LoadFailed(
                    ServiceUnavailable(
                        f"Container {self.hostname} of endpoint {endpoint} holds "
                        f"{len(self.loaded)} models, its limit, and all are in use. Retry shortly."
                    )
                )
            started = time.perf_counter()
            try:
                answer = await pool.post(
                    b"/models",
                    [(b"Content-Type", b"application/json")],
                    body,
                    self.limits.load_timeout_s,
                    MAX_CONTROL_ANSWER,
                )
            except UpstreamError as error:
                if isinstance(error, UpstreamTimeout) and self.on_hung is not None:
                    # A load that hangs holds the container (loads run one at a time there):
                    # only a restart frees it, and forgets what it had loaded.
                    self.on_hung(
                        f"its load of model {target} did not finish within "
                        f"{self.limits.load_timeout_s:g} s (--model-load-timeout)"
                    )
                raise LoadFailed(
                    ModelError(
                        f"Container {self.hostname} did not answer the load of model "
                        f"{target}: {error}."
                    )
                ) from None
            finally:
                loading_s += time.perf_counter() - started
            if answer.status in (200, 409):  # 409: it has it already
                break
            if answer.status == 507 and await self._evict_one(endpoint, keep=target):
                continue
            raise LoadFailed(self._refused(answer, target))
        return loading_s

    def restarted(self) -> None:
        """The container started again with no model loaded: forget what it had (and remove
        the copies of its models, on a thread of their own: this runs on the event loop)."""
        staged = [m.staged for m in self.loaded.values() if m.staged is not None]
        self.loaded.clear()
        self.metrics.loaded = 0
        if staged:
            self._discard(staged)

    def _discard_result(self, work: asyncio.Future[tuple[Any, str]]) -> None:
        if not work.cancelled() and work.exception() is None:
            self._discard([work.result()[0]])

    def _discard(self, staged: list[Any]) -> None:
        """Remove models' copies in a task of their own, not awaited: from a callback on the
        event loop, or from a load that was cancelled (which must not await anything more)."""
        task = asyncio.get_running_loop().create_task(
            _remove_staged(self.staging, staged, self.hostname), name=f"unstage:{self.hostname}"
        )
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    def _refused(self, answer: UpstreamResponse, target: str) -> ModelError:
        original = _message_of(answer.body)
        log.warning(
            "container %s could not load model %s (%d): %s",
            self.hostname,
            target,
            answer.status,
            original,
        )
        return ModelError(
            f"Received server error ({answer.status}) from {self.hostname} while loading "
            f'model {target} with message "{original}".',
            original_status_code=answer.status,
            original_message=original,
        )

    # -- unloading -------------------------------------------------------------------------
    async def _evict_one(self, endpoint: str, keep: str | None = None) -> bool:
        """Unload the least recently used model no invocation is using; False if none."""
        for name, model in self.loaded.items():
            if name != keep and model.inflight == 0:
                await self.unload(name, endpoint)
                return True
        return False

    async def unload(self, name: str, endpoint: str) -> None:
        """Forget `name`, then ask the container to unload it (a failure is only logged)."""
        model = self.loaded.pop(name, None)
        if model is None:
            return
        self.metrics.loaded = len(self.loaded)
        started = time.perf_counter()
        status = await self._delete(f"/models/{quote(name, safe='')}")
        self.metrics.unloading.observe((time.perf_counter() - started) * 1e6)
        if model.staged is not None:  # its own folder: a new load of `name` has another
            await _remove_staged(self.staging, [model.staged], self.hostname)
        if status not in (200, 404):
            log.warning(
                "container %s of endpoint %s answered %s to unloading model %s",
                self.hostname,
                endpoint,
                status,
                name,
            )

    async def _delete(self, path: str) -> int | None:
        """`DELETE path` on its own connection, bounded in time and bytes; the status or None."""
        host, port = self.address
        # Where the pool connects now: a restarted container may listen on another port.
        pool_host, pool_port = getattr(self.pool, "host", None), getattr(self.pool, "port", None)
        if isinstance(pool_host, str) and isinstance(pool_port, int):
            host, port = pool_host, pool_port
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(CONTROL_TIMEOUT_S):
                if self._connect is not None:
                    sock = await self._connect(host, port)
                    reader, writer = await asyncio.open_connection(sock=sock)
                else:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(
                    f"DELETE {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 0\r\n"
                    "Connection: close\r\n\r\n".encode("ascii")
                )
                await writer.drain()
                line = await reader.readline()
                await reader.read(MAX_CONTROL_ANSWER)
                parts = line.split()
                return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
        except (OSError, TimeoutError, ValueError) as error:
            log.warning("unloading %s from container %s failed: %s", path, self.hostname, error)
            return None
        finally:
            if writer is not None:
                writer.close()

    async def _wait_for_load(self, pool: ContainerPool, target: str, endpoint: str) -> _Model:
        """`ensure_loaded` for a model not loaded yet, its wait counted (ModelLoadingWaitTime)
        however it ends: loaded, failed, or given up on with a 429."""
        started = time.perf_counter()
        try:
            return await self.ensure_loaded(pool, target, endpoint)
        finally:
            self.metrics.loading_wait.observe((time.perf_counter() - started) * 1e6)

    # -- invoking --------------------------------------------------------------------------
    async def invoke(
        self,
        pool: ContainerPool,
        target: str,
        endpoint: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        timeout_s: float,
        max_response: int,
    ) -> UpstreamResponse:
        """The container's answer to the invocation of model `target`, loaded first if need be.

        Raises the caller's errors for a bad or missing TargetModel and a failed load, and
        `UpstreamError` when the invocation itself gets no answer (the router words that)."""
        self.pool = pool
        path = invocation_path(target)
        sent = [*headers, (TARGET_MODEL_HEADER, target.encode("utf-8"))]
        metrics = self.metrics
        if target in self.loaded:
            metrics.cache_hits += 1
        else:
            metrics.cache_misses += 1
        for attempt in range(2):
            if target in self.loaded:
                model = await self.ensure_loaded(pool, target, endpoint)
            else:
                model = await self._wait_for_load(pool, target, endpoint)
            model.inflight += 1
            try:
                answer = await pool.post(path, sent, body, timeout_s, max_response)
            finally:
                model.inflight -= 1
            if answer.status == 404 and attempt == 0:
                # The container lost it (it restarted): load it again, once, into a copy of
                # its own (the one it lost goes).
                lost = self.loaded.pop(target, None)
                metrics.loaded = len(self.loaded)
                if lost is not None and lost.staged is not None:
                    self._discard([lost.staged])
                continue
            if not self.cache and model.inflight == 0:
                await self.unload(target, endpoint)
            return answer
        return answer  # the second 404, answered as the container's


def _message_of(body: bytes) -> str:
    text = body[:MAX_MESSAGE].decode("utf-8", "replace")
    try:
        document = json.loads(body[:MAX_CONTROL_ANSWER])
    except ValueError:
        return text
    if isinstance(document, dict) and isinstance(document.get("message"), str):
        return str(document["message"])[:MAX_MESSAGE]
    return text


def require_target(endpoint: str, target: str | None) -> str:
    """The TargetModel of an invocation of a multi-model endpoint, or the caller's error."""
    if target is None:
        raise InvokeValidationError(
            f"Endpoint {endpoint} is a multi-model endpoint: TargetModel is required (the "
            "path of a model archive below the endpoint's model prefix)."
        )
    return target


# A model is loaded on one more instance once every instance holding it has this many requests
# in flight and another instance has fewer: a hot model spreads, a rarely used one stays put.
SPREAD_AT = 2


def multi_model_container(
    route: EndpointRoute, request: InvokeRequest
) -> tuple[VariantRoute, ReplicaRoute, ContainerRoute]:
    """(variant, replica, container) an invocation of a multi-model endpoint goes to: in
    Direct mode the container TargetContainerHostname names, in a Serial pipeline its
    MultiModel container (the one whose hop TargetModel reaches)."""
    variant = route.by_name.get(request.target_variant) if request.target_variant else None
    if request.target_variant is not None and variant is None:
        names = ", ".join(v.name for v in route.production)
        raise InvokeValidationError(
            f"Variant {request.target_variant} not found for endpoint {route.name}: "
            f"TargetVariant must be one of [{names}]."
        )
    chosen = variant or route.pick_variant()
    if chosen.mode == "Direct":
        if request.target_container is None:
            hostnames = ", ".join(c.hostname for c in chosen.replicas[0].containers)
            raise InvokeValidationError(
                f"Endpoint {route.name} uses Direct invocation mode: set "
                f"TargetContainerHostname to one of [{hostnames}]."
            )
        replica = model_replica(chosen, request.target_container, request.target_model)
        container = replica.by_hostname.get(request.target_container)
        if container is None:
            hostnames = ", ".join(c.hostname for c in replica.containers)
            raise InvokeValidationError(
                f"No container with hostname {request.target_container} in endpoint "
                f"{route.name}: TargetContainerHostname must be one of [{hostnames}]."
            )
    else:
        if request.target_container is not None:
            raise InvokeValidationError(
                f"Endpoint {route.name} is not in Direct invocation mode: remove "
                "TargetContainerHostname."
            )
        replica = model_replica(chosen, None, request.target_model)
        container = _pipeline_model_container(replica)
    return chosen, replica, container


def _pipeline_model_container(replica: ReplicaRoute) -> ContainerRoute:
    """The MultiModel container of a pipeline (validation allows one), else its first."""
    for container in replica.containers:
        if container.multi_model is not None:
            return container
    return replica.containers[0]


def _model_host(replica: ReplicaRoute, hostname: str | None) -> MultiModelContainer | None:
    if hostname is not None:
        container = replica.by_hostname.get(hostname)
        return None if container is None else container.multi_model
    return _pipeline_model_container(replica).multi_model


def model_replica(variant: VariantRoute, hostname: str | None, target: str | None) -> ReplicaRoute:
    """The instance a call of model `target` goes to, when the variant has several.

    SageMaker's placement, which its users count on for cost: a model goes to an instance that
    holds it already (the least busy of them), so a model is loaded on one instance, not on
    every one a round-robin would reach. A model no instance holds goes to the first of its own
    order of the instances (rendezvous hashing on its name and the instance id): the same one
    each time, whatever instance took the call before, and a model's order moves little when
    an instance is added or removed. A hot model spreads: once every instance holding it has
    `SPREAD_AT` calls in flight and the next instance in its order has fewer, the call goes
    there and loads it on one more instance. Instances that cannot serve are passed over as
    `pick_replica` passes them over."""
    replicas = variant.replicas
    if len(replicas) == 1 or target is None or variant.random:
        return variant.pick_replica(hostname)
    best: ReplicaRoute | None = None
    able = 0
    holders = 0
    for replica in replicas:
        if not replica.can_serve(hostname):
            continue
        able += 1
        multi = _model_host(replica, hostname)
        if multi is None:
            return variant.pick_replica(hostname)  # not a multi-model hop: the usual way
        if multi.holds(target):
            holders += 1
            if best is None or replica.outstanding < best.outstanding:
                best = replica
    if best is not None and (best.outstanding < SPREAD_AT or holders == able):
        return best
    spread: ReplicaRoute | None = None
    spread_rank = b""
    for replica in replicas:
        if not replica.can_serve(hostname):
            continue
        multi = _model_host(replica, hostname)
        if multi is None or multi.holds(target):
            continue
        rank = hashlib.blake2b(
            f"{target}\0{replica.instance_id}".encode("utf-8", "surrogatepass"), digest_size=8
        ).digest()
        if spread is None or rank > spread_rank:
            spread, spread_rank = replica, rank
    if spread is None:
        return best if best is not None else variant.pick_replica(hostname)
    if best is not None and spread.outstanding >= best.outstanding:
        return best  # no instance is less busy than the holders: no reason to load it again
    return spread


def model_answer_error(
    router: Router,
    route: EndpointRoute,
    container: ContainerRoute,
    target: str,
    answer: UpstreamResponse,
) -> ModelError:
    """The ModelError of a model's error answer, counted as the container's 4xx or 5xx."""
    counters = container.counters
    kind = "server" if answer.status >= 500 else "client"
    if answer.status >= 500:
        counters.errors_5xx += 1
    else:
        counters.errors_4xx += 1
    original = answer.body[:MAX_MESSAGE].decode("utf-8", "replace")
    return ModelError(
        f"Received {kind} error ({answer.status}) from model {target} in "
        f'{container.hostname} with message "{original}". See '
        f"{router._log_hint(route, container)} for more information.",
        original_status_code=answer.status,
        original_message=original,
        log_stream_arn=router._log_arn(route),
    )


def invocation_path(target: str) -> bytes:
    """The container's path of an invocation of model `target` (SageMaker's multi-model API)."""
    return f"/models/{quote(target, safe='')}/invoke".encode("ascii")


async def invoke_multi_model(
    router: Router, route: EndpointRoute, request: InvokeRequest
) -> InvokeResult:
    """InvokeEndpoint on an endpoint with a MultiModel container (see the module docstring).

    On a Direct endpoint a request for one of the other (single-model) containers goes the
    router's usual way, from the replica picked here. A Serial pipeline runs whole, as the
    router runs any pipeline, its MultiModel hop calling the TargetModel (`call_model`)."""
    from polyhost.router.router import InvokeResult

    variant, replica, container = multi_model_container(route, request)
    multi = container.multi_model
    if multi is None:
        if request.target_model is not None:
            raise InvokeValidationError(
                f"Container {container.hostname} of endpoint {route.name} is not a "
                "multi-model container: remove TargetModel."
            )
        return await router._invoke_on(route, variant, replica, request)
    target = require_target(route.name, request.target_model)
    replica.outstanding += 1
    try:
        if variant.mode != "Direct" and len(replica.containers) > 1:
            return await router._serial(route, variant, replica, request)
        headers = router._headers(request, request.content_type, request.accept)
        answer, _ = await call_model(
            router, route, container, target, request.body, headers, router._max_body
        )
    finally:
        replica.outstanding -= 1
    return InvokeResult(
        body=answer.body,
        content_type=answer.headers.get(b"content-type")
        or request.content_type
        or b"application/octet-stream",
        variant=variant.name,
        custom_attributes=answer.headers.get(b"x-amzn-sagemaker-custom-attributes"),
    )


async def call_model(
    router: Router,
    route: EndpointRoute,
    container: ContainerRoute,
    target: str,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    max_response: int,
) -> tuple[UpstreamResponse, float]:
    """One call of model `target` in a MultiModel container (loaded first if need be), counted
    as the container's invocation: (its 2xx answer, µs in the container). Raises the caller's
    ServiceError otherwise: a model's error answer is its ModelError."""
    multi = container.multi_model
    assert multi is not None
    counters = container.counters
    counters.invocations += 1
    if not container.available:
        counters.errors_5xx += 1
        raise ServiceUnavailable(
            f"Container {container.hostname} of endpoint {route.name} is unavailable: "
            f"{container.unavailable_reason}. Retry shortly."
        )
    started = time.perf_counter()
    try:
        answer = await multi.invoke(
            container.pool, target, route.name, headers, body, router._timeout, max_response
        )
    except UpstreamError as error:
        counters.errors_5xx += 1
        raise router._upstream_failure(error, route, container, max_response) from None
    except ServiceError as error:
        if error.status >= 500 or isinstance(error, ModelError):
            counters.errors_5xx += 1
        else:
            counters.errors_4xx += 1
        if isinstance(error, ModelError):  # shared by a load's waiters: a copy of each's own
            raise ModelError(
                f"{error.message} See {router._log_hint(route, container)} for more information.",
                original_status_code=error.original_status_code,
                original_message=error.original_message,
                log_stream_arn=router._log_arn(route),
            ) from None
        raise
    container_us = (time.perf_counter() - started) * 1e6
    counters.container_latency.observe(container_us)
    if answer.status >= 400:
        raise model_answer_error(router, route, container, target, answer)
    return answer, container_us
