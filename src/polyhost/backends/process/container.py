"""A container running as a child process: stop it, read its CPU and memory, check its port.

A stop reaches every process of the container: its process group, its cgroup, and the
processes that left both (found through `proc`); the dead among those the server
adopted are collected, and the stop returns once the container's output is on disk.
"""

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

from polyhost.backends import cgroups, proc
from polyhost.backends.base import ContainerStats, LaunchSpec
from polyhost.backends.local_container import LocalContainer
from polyhost.backends.process.group import (
    KILL_WAIT_S,
    any_alive,
    group_alive,
    signal_group,
    signal_pids,
    signal_processes,
)
from polyhost.logs.pump import LogPump

log = logging.getLogger("polyhost.backends.process")

# An exit is reported once the container's last output is in its log (so a FailureReason quotes
# it), or this long after the exit when something else still holds its output pipe.
OUTPUT_GRACE_S = 1.0
# How long a stop waits for the log pump to write what the container's processes left.
OUTPUT_WAIT_S = 2.0
# After the group is gone: how long to keep killing and waiting for what escaped it.
STRAYS_WAIT_S = 2.0


def total_memory() -> int:
    return int(psutil.virtual_memory().total)


class ProcessContainer(LocalContainer):
    """A running (or stopped) container process and the cgroups it was placed in."""

    output_grace_s = OUTPUT_GRACE_S
    output_wait_s = OUTPUT_WAIT_S
    output_poll_s = 0.01
    output_stuck = "a process out of reach still holds its output; no longer logged"
    logger = log

    def __init__(
        self,
        spec: LaunchSpec,
        popen: subprocess.Popen[bytes],
        placement: cgroups.Placement,
        limits_applied: str,
        pidfile: Path,
        on_stopped: Callable[[ProcessContainer], None] | None = None,
        *,
        run_id: str,
        pump: LogPump,
    ) -> None:
        super().__init__(spec, limits_applied, pump, on_stopped)
        self._popen = popen
        self._placement = placement
        self._pidfile = pidfile
        self._run_id = run_id
        self._pump = pump
        self._exited_at: float | None = None
        self._cpu_samplers: dict[int, psutil.Process] = {}
        self._sample_tree()  # prime cpu_percent so the first stats() has a baseline

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def log_path(self) -> Path:
        return self._spec.log_path

    @property
    def cgroups(self) -> list[Path]:
        """The cgroup folders holding the container (empty when the machine allows none)."""
        return [leaf.path for leaf in self._placement.leaves]

    @property
    def run_id(self) -> str:
        """Random per start; every process of this run carries it as POLYHOST_RUN_ID."""
        return self._run_id

    @property
    def log_pump(self) -> LogPump:
        return self._pump

    def exit_code(self) -> int | None:
        """None while running, and until the container's last output is in its log."""
        code = self._popen.poll()
        if code is None:
            return None
        if self._exited_at is None:
            self._exited_at = time.monotonic()
            proc.unregister_root(self._popen.pid)  # Popen has collected it
        return self._reported(code, self._exited_at)

    def _output_logged(self) -> bool:
        return self._pump.drained()

    def _gone(self, strays: list[psutil.Process]) -> bool:
        return (
            self._popen.poll() is not None
            and not group_alive(self._popen.pid)
            and not any_alive(strays)
        )

    async def _wait_gone(self, timeout_s: float, strays: list[psutil.Process]) -> bool:
        deadline = time.monotonic() + timeout_s
        delay = 0.002
        while not self._gone(strays):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    def _signal(self, sig: int, strays: list[psutil.Process]) -> None:
        signal_group(self._popen.pid, sig)
        signal_pids(self._placement.pids(), sig)
        signal_processes(strays, sig)

    def _members(self) -> list[psutil.Process]:
        """The container's processes outside its cgroup's view: its tree and adopted orphans."""
        return proc.members(self._popen.pid, self._run_id)

    async def _terminate(self, grace_s: float) -> None:
        """SIGTERM the group, SIGKILL whatever is left after `grace_s` (`stop` runs it once)."""
        strays = self._members()
        self._signal(signal.SIGTERM, strays)
        if not await self._wait_gone(max(grace_s, 0.0), strays):
            log.info("container %s ignored SIGTERM for %gs: killing it", self.container_id, grace_s)
            strays = _union(strays, self._members())
            self._signal(signal.SIGKILL, strays)
            if not await self._wait_gone(KILL_WAIT_S, strays):
                log.warning("container %s: processes survive SIGKILL", self.container_id)
        await self._kill_strays()
        if self._placement.leaves:
            log.warning(
                "container %s: cgroups not removed: %s",
                self.container_id,
                ", ".join(str(leaf.path) for leaf in self._placement.leaves),
            )
        self.exit_code()  # notes the exit, so the root is no longer a container main process
        await self._finish_output()
        self._pidfile.unlink(missing_ok=True)

    async def _kill_strays(self) -> None:
        """Kill what left the process group (setsid): in the cgroups, or adopted orphans; then
        collect the dead the server adopted, and remove the cgroups once they are empty."""
        deadline = time.monotonic() + STRAYS_WAIT_S
        while True:
            adopted = proc.adopted(self._run_id)
            signal_pids(self._placement.pids(), signal.SIGKILL)
            signal_processes(adopted, signal.SIGKILL)
            proc.reap_zombies()
            if (self._placement.remove() and not any_alive(adopted)) or (
                time.monotonic() >= deadline
            ):
                break
            await asyncio.sleep(0.01)
        # A process killed just now may be re-parented to the server only once its parent died.
        await asyncio.sleep(0)
        proc.reap_zombies()

    def _sample_tree(self) -> list[psutil.Process]:
        """The container's live process tree, reusing Process objects so CPU has a baseline."""
        tree = proc.descendants(self._popen.pid)
        samplers: dict[int, psutil.Process] = {}
        result: list[psutil.Process] = []
        for process in tree:
            known = self._cpu_samplers.get(process.pid)
            if known is None or known != process:  # new process (or a recycled pid)
                known = process
                with contextlib.suppress(psutil.Error):
                    process.cpu_percent(None)  # the first call only sets the baseline
            samplers[process.pid] = known
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
        for process in self._sample_tree():
            try:
                with process.oneshot():
                    cpu += process.cpu_percent(None)
                    rss += process.memory_info().rss
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
        tree = proc.descendants(self._popen.pid)
        if not tree:
            return False
        return proc.listening_in(tree, port)


def _union(first: list[psutil.Process], second: list[psutil.Process]) -> list[psutil.Process]:
    seen = {process.pid: process for process in first}
    for process in second:
        seen.setdefault(process.pid, process)
    return list(seen.values())
