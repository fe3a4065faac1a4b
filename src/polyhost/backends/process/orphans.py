"""Containers a killed server left behind: recorded at start, found and stopped at the next.

Containers live in their own sessions, so they outlive a server that could not stop them
(kill -9). Each start writes a pid file (pid, start time, cgroups, run id); the next server run
stops every recorded process that is still the same process (pid *and* start time, so a recycled
pid is never hit) before it reconciles, and with it every process still in the container's
cgroups or still carrying its run id (`POLYHOST_RUN_ID`: a process that escaped its container's
process group on a machine without cgroups, re-parented to init when the server died). The run
id is random per start, so another server's containers are never taken for this one's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
from pathlib import Path

import psutil

from polyhost.backends import cgroups
from polyhost.backends.proc import RUN_ID_VARIABLE
from polyhost.backends.process.group import (
    signal_pids,
    signal_processes,
    terminate_foreign_group,
)

log = logging.getLogger("polyhost.backends.process")


def write_pidfile(
    run_dir: Path,
    container_id: str,
    pid: int | None,
    placement: cgroups.Placement,
    run_id: str | None = None,
) -> Path:
    """Record the process so a server restarted after a crash can stop what it left.

    Written twice per start: before the spawn with no pid (the cgroups and the run id already
    find the container, should the server die between spawn and the second write), and after
    it with the pid.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"{container_id}.json"
    created = 0.0
    if pid is not None:
        with contextlib.suppress(psutil.Error):
            created = psutil.Process(pid).create_time()
    record = {
        "pid": pid or 0,
        "create_time": created,
        "cgroups": [str(leaf.path) for leaf in placement.leaves],
        "run_id": run_id,
    }
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record), encoding="utf-8")
    os.replace(temporary, path)
    return path


async def reap(run_dir: Path, live: set[str], grace_s: float) -> list[str]:
    """Stop the recorded containers that are not in `live` (those this run started).

    Call it once at server start, before reconciling. Returns the container ids stopped.
    """
    if not run_dir.is_dir():
        return []
    records: list[tuple[Path, int, float, list[Path], str | None]] = []
    for path in sorted(run_dir.glob("*.json")):
        if path.stem in live:
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            pid = int(record["pid"])
            created = float(record["create_time"])
            leaves = [Path(p) for p in record.get("cgroups", [])]
            run_id = record.get("run_id")
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        records.append((path, pid, created, leaves, run_id if isinstance(run_id, str) else None))
    marked = marked_processes({r[4] for r in records if r[4]}) if records else {}
    stopped: list[str] = []
    for path, pid, created, leaves, run_id in records:
        placement = cgroups.Placement(leaves=[cgroups.Leaf(leaf, 0, [], []) for leaf in leaves])
        strays = marked.get(run_id, []) if run_id else []
        if pid > 0 and is_same_process(pid, created):
            await terminate_foreign_group(pid, placement, grace_s, strays)
            stopped.append(path.stem)
        else:
            signal_pids(placement.pids(), signal.SIGKILL)
            signal_processes(strays, signal.SIGKILL)
        placement.remove()
        path.unlink(missing_ok=True)
    if stopped:
        log.warning("stopped %d container(s) left by a previous run", len(stopped))
    return stopped


def marked_processes(run_ids: set[str]) -> dict[str, list[psutil.Process]]:
    """Live processes whose environment carries one of `run_ids`, by run id.

    Reads every readable process's environment once: only done at start, and only when a
    previous run left records behind.
    """
    found: dict[str, list[psutil.Process]] = {}
    if not run_ids:
        return found
    own = os.getpid()
    for process in psutil.process_iter():
        if process.pid == own:
            continue
        try:
            value = process.environ().get(RUN_ID_VARIABLE)
        except psutil.Error:
            continue
        if value in run_ids:
            found.setdefault(value, []).append(process)
    return found


def is_same_process(pid: int, created: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - created) < 0.01
    except psutil.Error:
        return False
