"""The logs of endpoints that are gone but whose log files are still kept, found on disk.

CloudWatch keeps an endpoint's log group after DeleteEndpoint, and the first thing a user does
after a failed endpoint is deleted (or the server restarted) is read why it failed. polyhost
keeps a deleted endpoint's container folders for `--log-retention` (the janitor removes them
then), so the CloudWatch Logs API lists them too: the deployer's live streams, plus every
endpoint folder under the containers dir that the deployer does not know, read as the streams
of its latest revision (`<endpoint>/r<N>/<variant>/<instance>/<container>/container.log`,
`GroupStarter._plan`'s layout).

The scan is bounded in count (a few listdirs per endpoint, at most `MAX_STREAMS` streams) and
cached for `TTL_S`, so a Logs API caller cannot make the server walk the disk on every call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from polyhost.logs.streams import LogStream

# A folder the janitor is removing is first renamed with this prefix (endpoint names never start
# with a dot), so a reader never lists a half-removed endpoint.
TRASH_PREFIX = "."
TTL_S = 2.0
MAX_STREAMS = 4096
LOG_FILE = "container.log"

LiveStreams = Callable[[], Mapping[str, Sequence[LogStream]]]


class RetainedLogs:
    """The Logs API's catalog: live streams first, retained ones of unknown endpoints after."""

    def __init__(
        self,
        containers_dir: Path,
        live: LiveStreams,
        *,
        clock: Callable[[], float] = time.monotonic,
        ttl_s: float = TTL_S,
    ) -> None:
        self._containers_dir = containers_dir
        self._live = live
        self._clock = clock
        self._ttl_s = ttl_s
        self._scanned_at = -float("inf")
        self._on_disk: dict[str, list[LogStream]] = {}

    def __call__(self) -> dict[str, list[LogStream]]:
        catalog = {name: list(streams) for name, streams in self._live().items()}
        for name, streams in self._retained().items():
            catalog.setdefault(name, streams)
        return catalog

    def _retained(self) -> dict[str, list[LogStream]]:
        now = self._clock()
        if now - self._scanned_at >= self._ttl_s:
            self._on_disk = scan(self._containers_dir)
            self._scanned_at = now
        return self._on_disk


def scan(containers_dir: Path, max_streams: int = MAX_STREAMS) -> dict[str, list[LogStream]]:
    """Every endpoint folder's latest revision's log streams (up to `max_streams` in all)."""
    found: dict[str, list[LogStream]] = {}
    budget = max_streams
    for endpoint in _subdirs(containers_dir):
        if budget <= 0:
            break
        if endpoint.name.startswith(TRASH_PREFIX):
            continue
        revision = _latest_revision(endpoint)
        if revision is None:
            continue
        streams = list(_streams(endpoint.name, revision, budget))
        budget -= len(streams)
        if streams:
            found[endpoint.name] = streams
    return found


def _latest_revision(endpoint: Path) -> Path | None:
    numbered = [
        (int(path.name[1:]), path)
        for path in _subdirs(endpoint)
        if path.name.startswith("r") and path.name[1:].isdigit()
    ]
    return max(numbered)[1] if numbered else None


def _streams(endpoint_name: str, revision: Path, budget: int) -> list[LogStream]:
    streams: list[LogStream] = []
    for variant in _subdirs(revision):
        for instance in _subdirs(variant):
            for container in _subdirs(instance):
                log_path = container / LOG_FILE
                if len(streams) >= budget:
                    return streams
                if log_path.is_file():
                    streams.append(
                        LogStream(
                            endpoint_name, variant.name, instance.name, container.name, log_path
                        )
                    )
    return streams


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(path for path in folder.iterdir() if path.is_dir())
    except OSError:
        return []
