"""CPU and memory of a Docker container, sampled on a thread of its own.

Docker's stats call is slow (a second or two when it waits for two readings), far too slow for
`ContainerHandle.stats()`, which the metrics read whenever they are scraped. So a thread per
container takes a one-shot reading every SAMPLE_EVERY_S and keeps the last `ContainerStats`:
CPU is the container's CPU time between two readings over the wall time between them (100 =
one core, like the process backend), memory is usage less the reclaimable page cache (what
`docker stats` shows), and memory_percent is of the container's limit, or of the machine when
it has none (Docker reports the machine's memory as the limit then).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from polyhost.backends.base import ContainerStats

log = logging.getLogger("polyhost.backends.docker")

SAMPLE_EVERY_S = 2.0


@dataclass(frozen=True)
class Reading:
    cpu_ns: int  # the container's CPU time so far
    system_ns: int  # the machine's CPU time so far, all CPUs together
    online_cpus: int
    memory_bytes: int
    memory_limit: int


def reading(sample: Mapping[str, Any]) -> Reading | None:
    """The parts of one Docker stats answer used here; None for an empty one (stopped)."""
    cpu = sample.get("cpu_stats") or {}
    memory = sample.get("memory_stats") or {}
    usage = (cpu.get("cpu_usage") or {}).get("total_usage")
    if usage is None or not memory.get("usage"):
        return None
    details = memory.get("stats") or {}
    # Page cache the kernel can take back is not the container's own: cgroup v1 calls it
    # total_inactive_file, v2 inactive_file (what the docker CLI subtracts).
    cache = details.get("total_inactive_file", details.get("inactive_file", 0))
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    return Reading(
        cpu_ns=int(usage),
        system_ns=int(cpu.get("system_cpu_usage") or 0),
        online_cpus=int(online or 1),
        memory_bytes=max(int(memory["usage"]) - int(cache or 0), 0),
        memory_limit=int(memory.get("limit") or 0),
    )


def stats_between(before: Reading | None, now: Reading) -> ContainerStats:
    """ContainerStats from two readings (CPU 0 on the first)."""
    cpu_percent = 0.0
    if before is not None:
        system = now.system_ns - before.system_ns
        used = now.cpu_ns - before.cpu_ns
        if system > 0 and used >= 0:
            cpu_percent = 100.0 * used / system * now.online_cpus
    memory_percent = 100.0 * now.memory_bytes / now.memory_limit if now.memory_limit else 0.0
    return ContainerStats(
        cpu_percent=cpu_percent, rss_bytes=now.memory_bytes, memory_percent=memory_percent
    )


class StatsSampler:
    """Calls `read()` (one Docker stats answer) every `every_s` until stopped."""

    def __init__(
        self, read: Callable[[], Mapping[str, Any]], name: str, every_s: float = SAMPLE_EVERY_S
    ) -> None:
        self._read = read
        self._every_s = every_s
        self._stop = threading.Event()
        self._last: ContainerStats | None = None
        self._before: Reading | None = None
        self._thread = threading.Thread(target=self._run, name=f"docker-stats:{name}", daemon=True)

    @property
    def last(self) -> ContainerStats | None:
        return self._last

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._last = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                now = reading(self._read())
            except Exception as error:  # gone, or the daemon is busy: try again later
                log.debug("stats of %s: %s", self._thread.name, error)
                now = None
            if now is not None and not self._stop.is_set():
                self._last = stats_between(self._before, now)
                self._before = now
            self._stop.wait(self._every_s)
