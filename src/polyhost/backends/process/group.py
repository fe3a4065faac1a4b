"""Signalling a container's process group and cgroups, and telling when it is gone.

A container runs in its own session and process group, so one `killpg` reaches every process
it spawned; whatever escaped the group with `setsid` is still in the container's cgroups (or,
without cgroups, found by `proc`), which is why every signal goes to all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterable, Sequence

import psutil

from polyhost.backends import cgroups

# After SIGKILL a process is gone within milliseconds; this only bounds a wait on a process the
# kernel cannot kill (uninterruptible I/O), so stop() still returns.
KILL_WAIT_S = 10.0


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _live_member(pgid: int) -> bool:
    """True when a process of group `pgid` is still running (zombies do not count).

    A zombie is dead but stays in its group until its parent reaps it; for a container's
    orphaned grandchildren that parent is init, which may take its time. Waiting for that
    would only slow stop() down, so only running members count. Reads /proc (Linux); where
    there is none, every member counts.
    """
    try:
        entries = os.scandir("/proc")
    except OSError:
        return True
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as handle:
                    data = handle.read()
                fields = data[data.rindex(b")") + 2 :].split()
                state, group = fields[0], int(fields[2])
            except (OSError, ValueError, IndexError):
                continue
            if group == pgid and state not in (b"Z", b"X"):
                return True
    return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _live_member(pgid)


def signal_pids(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def signal_processes(processes: Iterable[psutil.Process], sig: int) -> None:
    """Signal processes known by psutil; one whose pid was recycled meanwhile is left alone."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.send_signal(sig)


def any_alive(processes: Iterable[psutil.Process]) -> bool:
    """True when one of `processes` still runs (zombies do not count)."""
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            continue
    return False


def any_pid_alive(pids: Iterable[int]) -> bool:
    """`any_alive` for bare pids (a cgroup's members)."""
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            continue
    return False


async def terminate_foreign_group(
    pgid: int,
    placement: cgroups.Placement,
    grace_s: float,
    strays: Sequence[psutil.Process] = (),
) -> None:
    """stop() for a process that is not our child: we can signal it but not reap it.

    `strays` are processes of the container found outside its group (see `orphans.reap`).
    """

    def alive() -> bool:
        return group_alive(pgid) or any_pid_alive(placement.pids()) or any_alive(strays)

    signal_group(pgid, signal.SIGTERM)
    signal_pids(placement.pids(), signal.SIGTERM)
    signal_processes(strays, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    signal_group(pgid, signal.SIGKILL)
    signal_pids(placement.pids(), signal.SIGKILL)
    signal_processes(strays, signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT_S
    while alive() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        signal_pids(placement.pids(), signal.SIGKILL)
