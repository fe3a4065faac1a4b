"""The janitor: removes what no endpoint needs any more, a while after it stopped needing it.

Two kinds of leftovers grow with every deploy and delete:

- cached models (`ArtifactStore`): a model no running or starting endpoint uses is removed
  after `--model-cache-grace`, or at once, oldest first, while unused models hold more than
  `--model-cache-max-bytes`;
- container folders and logs (`<containers>/<endpoint>/r<revision>/...`): a deleted endpoint's
  folder is removed `--log-retention` seconds after its last container stopped; while an
  endpoint exists, the folders of its current revision and of its last attempt (the failed one,
  whose log says why) stay, and older revisions go after the same retention.

What is in use comes from the deployer (`Usage`, computed on the event loop, so it is a
consistent picture of its groups); the disk work runs on the artifact store's workers, never on
the loop. Time since a folder became unused is measured from when the janitor first saw it so,
which after a restart means from the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from polyhost.logs.retained import TRASH_PREFIX
from polyhost.modeldata.store import ArtifactStore, remove_path
from polyhost.settings import Settings

log = logging.getLogger("polyhost.deploy.janitor")

MIN_INTERVAL_S = 0.25
MAX_INTERVAL_S = 60.0


@dataclass(frozen=True)
class Usage:
    """What the deployer runs, starts or stops right now, and what must be kept for it."""

    model_dirs: frozenset[Path]  # model folders of containers running, starting or stopping
    model_urls: frozenset[str]  # ModelDataUrls of endpoints being started
    endpoints: frozenset[str]  # endpoints that exist (the deployer runs or tried them)
    revision_dirs: frozenset[Path]  # <containers>/<endpoint>/r<N> to keep


def revision_dir(containers_dir: Path, endpoint_name: str, revision: int) -> Path:
    """Where a revision's containers keep their folders and logs (see `GroupStarter._plan`)."""
    return containers_dir / endpoint_name / f"r{revision}"


def interval_s(settings: Settings) -> float:
    """Often enough for the shortest of the two delays, rarely enough to cost nothing."""
    shortest = min(settings.model_cache_grace_s, settings.log_retention_s) / 4
    return min(max(shortest, MIN_INTERVAL_S), MAX_INTERVAL_S)


class Janitor:
    def __init__(
        self, settings: Settings, store: ArtifactStore, usage: Callable[[], Usage]
    ) -> None:
        self._containers_dir = settings.containers_dir
        self._grace_s = settings.model_cache_grace_s
        self._max_unused_bytes = settings.model_cache_max_bytes
        self._retention_s = settings.log_retention_s
        self._interval_s = interval_s(settings)
        self._store = store
        self._usage = usage
        self._idle_since: dict[Path, float] = {}  # touched only by the sweep job

    async def run(self) -> None:
        """Sweep every interval until cancelled; a failed sweep is logged and retried later."""
        while True:
            await asyncio.sleep(self._interval_s)
            await self.sweep()

    async def sweep(self) -> None:
        usage = self._usage()
        try:
            await self._store.collect_garbage(
                usage.model_dirs, usage.model_urls, self._grace_s, self._max_unused_bytes
            )
        except Exception:
            log.exception("collecting unused models failed")
        try:
            await self._store.run(self._sweep_containers, usage, time.time())
        except Exception:
            log.exception("removing old container folders failed")

    def _sweep_containers(self, usage: Usage, since_wall: float) -> None:
        """(In a worker.) Remove container folders unused for the retention period."""
        if not self._containers_dir.is_dir():
            return
        now = time.monotonic()
        seen: set[Path] = set()
        kept_parents = {path.parent for path in usage.revision_dirs}
        for folder in self._containers_dir.iterdir():
            if folder.name.startswith(TRASH_PREFIX):
                remove_path(folder)  # a removal a crash interrupted
            elif not folder.is_dir():
                continue
            elif folder.name in usage.endpoints:
                for revision in folder.iterdir():
                    if revision.name.startswith(TRASH_PREFIX):
                        remove_path(revision)
                    elif revision not in usage.revision_dirs:
                        seen.add(revision)
                        self._expire(revision, now, since_wall)
            elif folder not in kept_parents:
                seen.add(folder)
                self._expire(folder, now, since_wall)
        for path in set(self._idle_since) - seen:
            del self._idle_since[path]

    def _expire(self, path: Path, now: float, since_wall: float) -> None:
        first = self._idle_since.setdefault(path, now)
        if now - first < self._retention_s:
            return
        with contextlib.suppress(OSError):
            if path.stat().st_mtime >= since_wall:
                return  # written to after the usage was taken: an endpoint of that name is back
        trash = path.parent / f"{TRASH_PREFIX}{path.name}.removed"
        try:
            os.rename(path, trash)
        except OSError as error:
            log.warning("could not remove the container folder %s: %s", path, error)
            return
        remove_path(trash)
        self._idle_since.pop(path, None)
        log.info("removed the container folder %s (unused for %gs)", path, now - first)
