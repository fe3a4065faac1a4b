"""A container running as a child process: stop it, read its CPU and memory, check its port."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from polyhost.backends import cgroups
from polyhost.backends.base import ContainerStats, LaunchSpec
from polyhost.backends.process_group import KILL_WAIT_S, group_alive, signal_group, signal_pids

log = logging.getLogger("polyhost.backends.process")


def total_memory() -> int:
    return int(psutil.virtual_memory().total)


class ProcessContainer:
    """A running (or stopped) container process and the cgroups it was placed in."""

    def __init__(
        self,
        spec: LaunchSpec,
        popen: subprocess.Popen[bytes],
        placement: cgroups.Placement,
        limits_applied: str,
        pidfile: Path,
        on_stopped: Callable[[ProcessContainer], None] | None = None,
    ) -> None:
        self._spec = spec
        self._on_stopped = on_stopped
        self._popen = popen
        self._placement = placement
        self._limits_applied = limits_applied
        self._pidfile = pidfile
        self._stopping: asyncio.Event | None = None
        self._cpu_samplers: dict[int, psutil.Process] = {}
        self._sample_tree()  # prime cpu_percent so the first stats() has a baseline

    @property
    def container_id(self) -> str:
        return self._spec.container_id

    @property
    def host(self) -> str:
        return self._spec.host

    @property
    def port(self) -> int:
        return self._spec.port

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def log_path(self) -> Path:
        return self._spec.log_path

    @property
    def limits_applied(self) -> str:
        return self._limits_applied

    @property
    def cgroups(self) -> list[Path]:
        """The cgroup folders holding the container (empty when no limit went through one)."""
        return [leaf.path for leaf in self._placement.leaves]

    @property
    def stopped(self) -> bool:
        """True once stop() has finished: nothing of the container runs any more."""
        return self._stopping is not None and self._stopping.is_set()

    def exit_code(self) -> int | None:
        return self._popen.poll()

    def _gone(self) -> bool:
        return self._popen.poll() is not None and not group_alive(self._popen.pid)

    async def _wait_gone(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        delay = 0.002
        while not self._gone():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    async def stop(self, grace_s: float) -> None:
        """SIGTERM the group, SIGKILL whatever is left after `grace_s`; safe to call again."""
        if self._stopping is not None:
            await self._stopping.wait()
            return
        self._stopping = asyncio.Event()
        try:
            await self._terminate(grace_s)
        finally:
            self._stopping.set()
            if self._on_stopped is not None:
                self._on_stopped(self)

    async def _terminate(self, grace_s: float) -> None:
        pgid = self._popen.pid
        signal_group(pgid, signal.SIGTERM)
        signal_pids(self._placement.pids(), signal.SIGTERM)
        if not await self._wait_gone(max(grace_s, 0.0)):
            log.info("container %s ignored SIGTERM for %gs: killing it", self.container_id, grace_s)
            signal_group(pgid, signal.SIGKILL)
            if not await self._wait_gone(KILL_WAIT_S):
                log.warning("container %s: processes survive SIGKILL", self.container_id)
        # Anything that left the process group (setsid) is still in the container's cgroups.
        deadline = time.monotonic() + 2.0
        while True:
            signal_pids(self._placement.pids(), signal.SIGKILL)
            if self._placement.remove() or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.01)
        if self._placement.leaves:
            log.warning(
                "container %s: cgroups not removed: %s",
                self.container_id,
                ", ".join(str(leaf.path) for leaf in self._placement.leaves),
            )
        self._pidfile.unlink(missing_ok=True)

    def _sample_tree(self) -> list[psutil.Process]:
        """The container's live process tree, reusing Process objects so CPU has a baseline."""
        try:
            root = self._cpu_samplers.get(self._popen.pid) or psutil.Process(self._popen.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        samplers: dict[int, psutil.Process] = {}
        result: list[psutil.Process] = []
        for proc in tree:
            known = self._cpu_samplers.get(proc.pid)
            if known is None or known != proc:  # new process (or a recycled pid)
                known = proc
                with contextlib.suppress(psutil.Error):
                    proc.cpu_percent(None)  # the first call only sets the baseline
            samplers[proc.pid] = known
            result.append(known)
        self._cpu_samplers = samplers
        return result

    def stats(self) -> ContainerStats | None:
        """CPU (100 = one core, since the previous call) and memory of the whole process tree."""
        if self._popen.poll() is not None:
            return None
        cpu = 0.0
        rss = 0
        seen = False
        for proc in self._sample_tree():
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                seen = True
            except psutil.Error:
                continue
        if not seen:
            return None
        return ContainerStats(
            cpu_percent=cpu, rss_bytes=rss, memory_percent=100.0 * rss / total_memory()
        )

    def listens_on(self, port: int) -> bool | None:
        """Whether a process of this container holds a listening socket on `port`.

        The deployer asks before trusting a `/ping` answer: on a machine shared with other
        servers a port that was free when it was handed out can be taken by someone else's
        process before the container binds it, and that process must never be mistaken for
        the container. None when the OS does not say (then the ping answer is trusted).
        """
        if self._popen.poll() is not None:
            return False
        try:
            root = psutil.Process(self._popen.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return False
        unknown = False
        for proc in tree:
            try:
                connections = proc.net_connections(kind="tcp")
            except psutil.AccessDenied:
                unknown = True
                continue
            except psutil.Error:
                continue
            for connection in connections:
                if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                    return True
        return None if unknown else False
