"""Containers a killed server left behind: recorded at start, found and stopped at the next.

Containers live in their own sessions, so they outlive a server that could not stop them
(kill -9). Each start writes a pid file (pid, start time, cgroups); the next server run stops
every recorded process that is still the same process (pid *and* start time, so a recycled
pid is never hit) before it reconciles.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import psutil

from polyhost.backends import cgroups
from polyhost.backends.process_group import signal_pids, terminate_foreign_group

log = logging.getLogger("polyhost.backends.process")


def write_pidfile(run_dir: Path, container_id: str, pid: int, placement: cgroups.Placement) -> Path:
    """Record the process so a server restarted after a crash can stop what it left."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"{container_id}.json"
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = 0.0
    record = {
        "pid": pid,
        "create_time": created,
        "cgroups": [str(leaf.path) for leaf in placement.leaves],
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
    stopped: list[str] = []
    for path in sorted(run_dir.glob("*.json")):
        if path.stem in live:
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            pid = int(record["pid"])
            created = float(record["create_time"])
            leaves = [Path(p) for p in record.get("cgroups", [])]
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        placement = cgroups.Placement(leaves=[cgroups.Leaf(leaf, 0, [], []) for leaf in leaves])
        if is_same_process(pid, created):
            await terminate_foreign_group(pid, placement, grace_s)
            stopped.append(path.stem)
        else:
            signal_pids(placement.pids(), signal.SIGKILL)
        placement.remove()
        path.unlink(missing_ok=True)
    if stopped:
        log.warning("stopped %d container(s) left by a previous run", len(stopped))
    return stopped


def is_same_process(pid: int, created: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - created) < 0.01
    except psutil.Error:
        return False
