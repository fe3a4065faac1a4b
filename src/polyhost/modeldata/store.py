"""The model data cache: fetch a `ModelDataUrl` once, extract it safely, share it read-only.

Layout under the cache folder:

    index/<sha256 of URL>.json   what the URL held last time: validator + content hash
    models/<content sha256>/     an extracted model (or a copied local folder), read-only,
                                 shared by every replica
    locks/<sha256 of URL>.lock   one fetch per URL at a time (threads and processes alike)
    locks/session-<id>.lock      held for as long as a store (a server) uses tmp/<id>/
    tmp/<id>/                    that store's downloads and extractions in progress

A model is keyed by its content, not its URL: the same archive under two URLs is extracted once,
and a URL whose content changed gets a new folder while running containers keep the old one.
A folder appears under `models/` only by an atomic rename of a finished extraction, so a reader
never sees half a model, and two fetches racing for the same content cannot corrupt it.

Work runs on the store's own bounded pool of threads (`fetch`), never on asyncio's default
executor, and every fetch can be cancelled: the awaiting task's cancellation (endpoint deleted,
updated, server stopping) sets the fetch's flag, which its loops check between chunks, and wakes
its sockets. `ModelDataDownloadTimeoutInSeconds` bounds download *and* extraction together.

Nothing is kept for ever: at start, the temporary folders of stores that no longer run (a server
killed mid-extraction) are removed, and `collect_garbage` — called by the deployer's janitor with
the models its endpoints use — removes models unused for the grace period, and the oldest unused
ones at once when they hold more than the cache's bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

from polyhost.modeldata.errors import ArtifactError, redact_url
from polyhost.modeldata.extract import ExtractLimits, extract_archive, make_read_only, seal_folders
from polyhost.modeldata.fetch_control import Cancellation, FetchLimits
from polyhost.modeldata.hosts import HostPolicy
from polyhost.modeldata.https_source import HttpsSource
from polyhost.modeldata.local_policy import Forbidden, LocalModelPolicy
from polyhost.modeldata.sources import (
    Fetched,
    FileSource,
    S3Source,
    Source,
    Validator,
)
from polyhost.modeldata.workers import PoolClosed, WorkerPool
from polyhost.settings import Settings

__all__ = ["ArtifactError", "ArtifactStore"]

log = logging.getLogger("polyhost.modeldata.store")
_T = TypeVar("_T")

# How long past its own deadline an awaited fetch may run before the awaiting side gives up on
# the worker (one that is stuck in a call no check can interrupt).
OVERRUN_S = 5.0


def remove_path(path: Path) -> None:
    """Delete a file or a folder tree, even one made read-only."""
    if path.is_dir() and not path.is_symlink():

        def writable_then_retry(function: object, name: str, _info: object) -> None:
            with contextlib.suppress(OSError):
                os.chmod(os.path.dirname(name), 0o700)
                os.chmod(name, 0o700)
            with contextlib.suppress(OSError):
                if os.path.isdir(name) and not os.path.islink(name):
                    os.rmdir(name)
                else:
                    os.unlink(name)

        shutil.rmtree(path, onerror=writable_then_retry)
    else:
        path.unlink(missing_ok=True)


def tree_size(root: Path) -> int:
    """Bytes of the regular files below `root` (links are not followed)."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def source_for(url: str, policy: HostPolicy, local: LocalModelPolicy | None = None) -> Source:
    """The source for a model URL, or ArtifactError naming the schemes polyhost takes."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        return FileSource(url, local)
    if scheme == "s3":
        return S3Source(url)
    if scheme == "https":
        return HttpsSource(url, policy)
    raise ArtifactError(
        f"Model data URL {redact_url(url)} is not supported: use s3://, https:// or file://."
    )


class ArtifactStore:
    """Fetches model data by URL into a content-addressed cache of extracted folders."""

    def __init__(
        self,
        cache_dir: Path,
        max_extracted_bytes: int,
        max_members: int = 100_000,
        *,
        max_ratio: int | None = None,
        workers: int = Settings.artifact_workers,
        allow_hosts: Iterable[str] = (),
        local_policy: LocalModelPolicy | None = None,
    ) -> None:
        self._cache_dir = cache_dir
        self._max_bytes = max_extracted_bytes
        self._max_members = max_members
        self._max_ratio = max_ratio
        self._policy = HostPolicy(allow_hosts)
        # Whatever the policy says, the cache itself is never copied into itself.
        self._local = (local_policy or LocalModelPolicy()).forbidding(
            [Forbidden(cache_dir, "the server's model cache")]
        )
        self._pool = WorkerPool(workers)
        self._started = time.monotonic()
        # `_guard` makes "is this model there, then use it" atomic against the collector's
        # "is it unused, then remove it"; the maps below are read and written under it.
        self._guard = threading.Lock()
        self._last_used: dict[str, float] = {}  # content hash -> time.monotonic()
        self._url_content: dict[str, str] = {}  # URL key -> content hash last handed out
        self._sizes: dict[str, int] = {}  # content hash -> bytes (models never change)
        self._inflight: set[Cancellation] = set()
        for folder in (self._index_dir, self._models_dir, self._locks_dir, self._tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._session = secrets.token_hex(8)
        self._session_lock: IO[bytes] | None = self._hold_session()
        self._work = self._tmp_dir / self._session
        self._work.mkdir()
        self._clean_tmp()

    @classmethod
    def from_settings(cls, settings: Settings) -> ArtifactStore:
        return cls(
            settings.artifact_cache_dir,
            settings.max_model_bytes,
            max_ratio=settings.max_model_ratio,
            workers=settings.artifact_workers,
            allow_hosts=settings.allow_model_hosts,
            local_policy=LocalModelPolicy.from_settings(settings),
        )

    @property
    def _index_dir(self) -> Path:
        return self._cache_dir / "index"

    @property
    def _models_dir(self) -> Path:
        return self._cache_dir / "models"

    @property
    def _locks_dir(self) -> Path:
        return self._cache_dir / "locks"

    @property
    def _tmp_dir(self) -> Path:
        return self._cache_dir / "tmp"

    @property
    def models_dir(self) -> Path:
        return self._models_dir

    @property
    def work_dir(self) -> Path:
        """This store's own temporary folder (empty whenever no fetch is in progress)."""
        return self._work

    # -- temporary folders ------------------------------------------------------------------
    def _session_lock_path(self, session: str) -> Path:
        return self._locks_dir / f"session-{session}.lock"

    def _hold_session(self) -> IO[bytes]:
        """Lock this store's session for its lifetime; a dead process's lock is released."""
        handle = open(self._session_lock_path(self._session), "a+b")  # noqa: SIM115
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        return handle

    def _session_alive(self, session: str) -> bool:
        try:
            fd = os.open(self._session_lock_path(session), os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def _clean_tmp(self) -> None:
        """Remove what stores that no longer run left in tmp/ (a server killed mid-fetch).

        A store holds its session lock while it lives, so whatever belongs to a session nobody
        holds is garbage, however young; a live store's folder (another server sharing the
        cache) is left alone."""
        for path in self._tmp_dir.iterdir():
            if path.name == self._session or (path.is_dir() and self._session_alive(path.name)):
                continue
            log.info("removing the leftover temporary model data %s", path.name)
            with contextlib.suppress(OSError):
                remove_path(path)
        for lock in self._locks_dir.glob("session-*.lock"):
            session = lock.name[len("session-") : -len(".lock")]
            if session != self._session and not self._session_alive(session):
                lock.unlink(missing_ok=True)

    # -- fetching ---------------------------------------------------------------------------
    def _limits(self, timeout_s: float) -> FetchLimits:
        return FetchLimits(
            deadline=time.monotonic() + timeout_s,
            timeout_s=timeout_s,
            max_bytes=self._max_bytes,
            max_files=self._max_members,
        )

    def fetch_and_extract(self, url: str, timeout_s: float) -> Path:
        """The folder holding the extracted model of `url` (fetched unless cached and unchanged).

        Blocks the calling thread; `timeout_s` bounds waiting for a concurrent fetch of the same
        URL, the download and the extraction together. Raises ArtifactError with a message fit
        for an endpoint's FailureReason. `close()` cancels it."""
        return self._fetch(url, self._limits(timeout_s))

    async def fetch(self, url: str, timeout_s: float) -> Path:
        """`fetch_and_extract` on the store's own workers; cancelling the awaiting task cancels
        the fetch (its worker stops at its next check and removes its temporary files).

        The deadline starts now: time spent waiting for a free worker counts against it."""
        limits = self._limits(timeout_s)
        try:
            future = self._pool.submit(self._fetch, url, limits)
        except PoolClosed:
            raise ArtifactError(
                "The server is shutting down; the model data was not fetched."
            ) from None
        try:
            async with asyncio.timeout(limits.remaining() + OVERRUN_S):
                return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            limits.cancel.cancel()
            raise
        except TimeoutError:
            limits.cancel.cancel()
            raise limits.timed_out(redact_url(url)) from None

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Blocking disk work (the janitor's) on the store's workers."""
        return await asyncio.wrap_future(self._pool.submit(fn, *args))

    async def close(self, grace_s: float) -> None:
        """Cancel every fetch in flight, refuse new ones, and wait at most `grace_s` for the
        workers to end (their threads never keep the process alive past that)."""
        with self._guard:
            inflight = list(self._inflight)
        for cancellation in inflight:
            cancellation.cancel()
        self._pool.close(0.0)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while self._pool.busy() and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self._pool.busy():
            log.warning("%d model data workers still busy at shutdown", self._pool.busy())
        elif self._session_lock is not None:
            self._session_lock.close()  # nothing of ours left in tmp/ to protect
            self._session_lock = None

    @contextlib.contextmanager
    def _tracked(self, cancellation: Cancellation) -> Iterator[None]:
        with self._guard:
            self._inflight.add(cancellation)
        try:
            yield
        finally:
            with self._guard:
                self._inflight.discard(cancellation)

    def _fetch(self, url: str, limits: FetchLimits) -> Path:
        label = redact_url(url)
        with self._tracked(limits.cancel):
            limits.check(label)  # waiting for a worker may have used the time up
            source = source_for(url, self._policy, self._local)
            url_key = hashlib.sha256(url.encode()).hexdigest()
            with self._locked(url_key, limits, label):
                cached = self._cached(url_key)
                fetched = source.fetch(cached[0] if cached else None, self._work, limits)
                if fetched is None:
                    assert cached is not None
                    with self._guard:  # unless collected since it was looked up
                        if (self._models_dir / cached[1]).is_dir():
                            log.info("model data %s unchanged; using the cached copy", label)
                            return self._handed_out(url_key, cached[1])
                    fetched = source.fetch(None, self._work, limits)
                    assert fetched is not None
                try:
                    folder = self._install(fetched, url_key, label, limits)
                    self._write_index(url_key, label, fetched.validator, fetched.sha256)
                    return folder
                finally:
                    if fetched.temporary:
                        remove_path(fetched.path)

    def _handed_out(self, url_key: str, content: str) -> Path:
        """Record that a model is being used now (call under `_guard`)."""
        self._last_used[content] = time.monotonic()
        self._url_content[url_key] = content
        return self._models_dir / content

    @contextlib.contextmanager
    def _locked(self, url_key: str, limits: FetchLimits, label: str) -> Iterator[None]:
        """An exclusive flock per URL; each call opens its own descriptor, so threads conflict."""
        fd = os.open(self._locks_dir / f"{url_key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            delay = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if limits.cancel.cancelled:
                        limits.check(label)
                    if limits.remaining() <= 0:
                        raise ArtifactError(
                            f"Failed to download model data from {label}: timed out after "
                            f"{limits.timeout_s:g} seconds waiting for another download of it."
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.1)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _cached(self, url_key: str) -> tuple[Validator, str] | None:
        """(validator, content hash) from the last fetch of this URL, if its folder still exists."""
        try:
            record = json.loads((self._index_dir / f"{url_key}.json").read_text("utf-8"))
            validator = record["validator"]
            content = str(record["content"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(validator, dict) or not (self._models_dir / content).is_dir():
            return None
        return {str(k): str(v) for k, v in validator.items()}, content

    def _write_index(
        self, url_key: str, label: str, validator: Validator | None, content: str
    ) -> None:
        path = self._index_dir / f"{url_key}.json"
        if validator is None:  # the source cannot revalidate: fetch again next time
            path.unlink(missing_ok=True)
            return
        # The redacted URL only: the index must not become a store of presigned secrets.
        record = {"url": label, "validator": validator, "content": content}
        handle, name = tempfile.mkstemp(dir=self._work, suffix=".index")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(record, out)
        os.replace(name, path)

    def _install(self, fetched: Fetched, url_key: str, label: str, limits: FetchLimits) -> Path:
        """Extract (or adopt a downloaded tree) into `models/<sha>` unless it is already there."""
        final = self._models_dir / fetched.sha256
        with self._guard:
            if final.is_dir():
                log.info("model data %s has the content of an already extracted model", label)
                return self._handed_out(url_key, fetched.sha256)
        if fetched.kind == "tree":
            staging = fetched.path
        else:
            staging = Path(tempfile.mkdtemp(dir=self._work, suffix=".extract"))
            try:
                extract_archive(
                    fetched.path,
                    staging,
                    ExtractLimits(
                        max_bytes=self._max_bytes,
                        max_members=self._max_members,
                        max_ratio=self._max_ratio,
                        check=lambda: limits.check(label, "extract"),
                        opened=fetched.reopened,
                    ),
                    label,
                )
            except BaseException:
                remove_path(staging)
                raise
        make_read_only(staging)
        size = tree_size(staging)
        with self._guard:
            try:
                os.rename(staging, final)
            except OSError as error:
                remove_path(staging)
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                    raise ArtifactError(
                        f"Model data {label} could not be stored: {error.strerror}"
                    ) from None
                # another fetch with the same content finished first
                return self._handed_out(url_key, fetched.sha256)
            self._sizes[fetched.sha256] = size
            folder = self._handed_out(url_key, fetched.sha256)
        seal_folders(final)
        log.info("model data %s extracted to %s (%d bytes)", label, final, size)
        return folder

    # -- garbage collection -------------------------------------------------------------------
    async def collect_garbage(
        self,
        in_use_dirs: Iterable[Path],
        in_use_urls: Iterable[str],
        grace_s: float,
        max_unused_bytes: int,
    ) -> list[str]:
        """Remove cached models nobody uses: those unused for `grace_s`, then the least recently
        used ones while the unused ones hold more than `max_unused_bytes`. Returns their hashes.

        `in_use_dirs` are the model folders of running and starting containers, `in_use_urls`
        the URLs endpoints still being started are fetching. A model handed out after this call
        began is kept whatever the lists say (its endpoint was not in them yet)."""
        since = time.monotonic()
        names = {p.name for p in in_use_dirs if p.parent == self._models_dir}
        keys = {hashlib.sha256(u.encode()).hexdigest() for u in in_use_urls}
        return await self.run(self._collect, names, keys, since, grace_s, max_unused_bytes)

    def _collect(
        self, names: set[str], keys: set[str], since: float, grace_s: float, max_unused: int
    ) -> list[str]:
        present = [p.name for p in self._models_dir.iterdir() if p.is_dir()]
        for name in present:
            if name not in self._sizes:  # once per model: its content never changes
                self._sizes[name] = tree_size(self._models_dir / name)
        now = time.monotonic()
        doomed: list[str] = []
        with self._guard:
            keep = names | {self._url_content[k] for k in keys if k in self._url_content}
            unused: list[tuple[float, str]] = []
            for name in present:
                last = self._last_used.setdefault(name, self._started)
                if name in keep:
                    self._last_used[name] = now
                elif last < since:
                    unused.append((last, name))
            unused.sort()
            left = sum(self._sizes.get(name, 0) for _last, name in unused)
            for last, name in unused:
                if last < now - grace_s or left > max_unused:
                    doomed.append(name)
                    left -= self._sizes.get(name, 0)
            trash = []
            for name in list(doomed):
                target = self._work / f"{name}.collected"
                try:  # moving a folder rewrites its "..": it must be writable for that
                    os.chmod(self._models_dir / name, 0o755)
                    os.rename(self._models_dir / name, target)
                except OSError as error:
                    log.warning("could not remove the cached model %s: %s", name, error)
                    doomed.remove(name)
                    continue
                trash.append(target)
                self._last_used.pop(name, None)
                self._sizes.pop(name, None)
                for key in [k for k, v in self._url_content.items() if v == name]:
                    del self._url_content[key]
        for path in trash:
            remove_path(path)
        if doomed:
            self._forget(set(doomed))
            log.info("removed %d unused cached models: %s", len(doomed), ", ".join(doomed))
        return doomed

    def _forget(self, contents: set[str]) -> None:
        """Drop index records that point at removed models."""
        for record in self._index_dir.glob("*.json"):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                if json.loads(record.read_text("utf-8"))["content"] in contents:
                    record.unlink()
