"""Which CPUs the serving side may use, switched at run time for a whole process tree.

`taskset` fixes a program's CPUs when it starts; a scenario that compares two layouts with the
same running servers moves them instead (children inherit nothing after the fact, so every
process of the tree is moved).
"""

from __future__ import annotations

import contextlib
import os

import psutil

ALL_CPUS = list(range(os.cpu_count() or 1))


def set_tree_affinity(pid: int, cpus: list[int] | None) -> None:
    """Allow `pid` and all its descendants (and their threads) on `cpus` (None: every CPU)."""
    target = cpus or ALL_CPUS
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error, OSError):
            for thread in process.threads():
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(thread.id, target)
            process.cpu_affinity(target)
