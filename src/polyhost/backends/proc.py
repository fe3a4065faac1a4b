"""Every process of a container, including those that left its process tree, and their zombies.

A container's main process is the server's child and the processes it starts are its
descendants, until one double-forks: the middle process exits and the grandchild, after
`setsid`, is in none of the container's process groups and, ordinarily, a child of init that
nothing ties to the container any more. Two nets catch such an escape:

- the container's cgroup (`cgroups.py`), whenever the machine lets the server make one: the
  kernel keeps every descendant in it whatever it does;
- the server as a *child subreaper* (`prctl(PR_SET_CHILD_SUBREAPER)`, set once when the backend
  is built): an orphan is re-parented to the server instead of init, and it still carries the
  `POLYHOST_RUN_ID` its container was started with (`process/env.py`), so the server can tell
  whose it is (`adopted`) and stop it with its container.

The subreaper makes the server the parent of such orphans, so it must also collect them when
they die (`reap_zombies`), or they would stay zombies until the server exits. Only zombies that
cannot be anyone else's business are collected: children of the server that are not container
main processes (those are `subprocess.Popen`'s to wait for) and that run in another session than
the server's (every container process does: containers start in their own session).

What no net catches: a process that clears its environment *and* escapes on a machine without
usable cgroups. That is the limit of the fallback.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading

import psutil

log = logging.getLogger("polyhost.backends.process")

RUN_ID_VARIABLE = "POLYHOST_RUN_ID"
PR_SET_CHILD_SUBREAPER = 36

_lock = threading.Lock()
_subreaper: bool | None = None
_roots: set[int] = set()  # main processes of running containers: Popen reaps them itself
_run_ids: dict[tuple[int, float], str | None] = {}  # (pid, start time) → its POLYHOST_RUN_ID


def become_subreaper() -> bool:
    """Make this process the child subreaper of its descendants (once); False if it cannot."""
    global _subreaper
    with _lock:
        if _subreaper is None:
            _subreaper = _prctl_subreaper()
        return _subreaper


def _prctl_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        failed = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0
        reason = os.strerror(ctypes.get_errno()) if failed else ""
    except (OSError, AttributeError) as error:  # not Linux, or no prctl
        failed, reason = True, str(error)
    if failed:
        log.warning(
            "cannot become a child subreaper (%s): processes that escape a container's process "
            "group are only stopped through its cgroup",
            reason,
        )
    return not failed


def register_root(pid: int) -> None:
    with _lock:
        _roots.add(pid)


def unregister_root(pid: int) -> None:
    with _lock:
        _roots.discard(pid)


def _run_id(process: psutil.Process) -> str | None:
    """The process's POLYHOST_RUN_ID, read once per process (its environment does not move)."""
    try:
        key = (process.pid, process.create_time())
    except psutil.Error:
        return None
    if key in _run_ids:
        return _run_ids[key]
    try:
        value = process.environ().get(RUN_ID_VARIABLE)
    except psutil.Error:
        value = None
    _run_ids[key] = value
    return value


def _children() -> list[psutil.Process]:
    try:
        return psutil.Process().children()
    except psutil.Error:
        return []


def adopted(run_id: str) -> list[psutil.Process]:
    """Live orphans re-parented to this process that belong to the container run `run_id`,
    with their descendants."""
    found: list[psutil.Process] = []
    with _lock:
        roots = set(_roots)
    children = _children()
    live = {(c.pid, _create_time(c)) for c in children}
    for key in list(_run_ids):
        if key not in live:
            del _run_ids[key]
    for child in children:
        if child.pid in roots or _is_zombie(child) or _run_id(child) != run_id:
            continue
        found.append(child)
        with contextlib.suppress(psutil.Error):
            found.extend(child.children(recursive=True))
    return found


def descendants(pid: int) -> list[psutil.Process]:
    """`pid` and its live descendants (empty once it is gone).

    Read from the tree itself (`/proc/<pid>/task/<tid>/children`) where the kernel offers it:
    psutil's `children(recursive=True)` reads every process of the machine to find them, which
    made sampling 15 containers cost 20-36 ms on the event loop (and `/api/containers` 24 ms;
    6 ms this way). A child started or reaped during the walk may be missed; the next sample
    sees it. A kernel without those files gets psutil's walk."""
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return []
    found = [root]
    todo = [pid]
    seen = {pid}  # a pid recycled during the walk must not be walked twice
    while todo:
        parent = todo.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue  # gone meanwhile
        except OSError:
            return _psutil_descendants(root)
        for thread in threads:
            try:
                with open(f"/proc/{parent}/task/{thread}/children", encoding="ascii") as file:
                    children = [int(word) for word in file.read().split()]
            except FileNotFoundError:
                if not os.path.exists(f"/proc/{parent}/task/{thread}"):
                    continue  # the thread ended meanwhile
                return _psutil_descendants(root)  # a kernel without CONFIG_PROC_CHILDREN
            except OSError:
                continue
            for child in children:
                if child in seen:
                    continue
                seen.add(child)
                with contextlib.suppress(psutil.Error):
                    found.append(psutil.Process(child))
                    todo.append(child)
    return found


def _psutil_descendants(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def members(root_pid: int, run_id: str) -> list[psutil.Process]:
    """Every process of one container run that can be found without cgroups."""
    seen: dict[int, psutil.Process] = {}
    for process in (*descendants(root_pid), *adopted(run_id)):
        seen.setdefault(process.pid, process)
    return list(seen.values())


def _create_time(process: psutil.Process) -> float:
    try:
        return float(process.create_time())
    except psutil.Error:
        return 0.0


def _is_zombie(process: psutil.Process) -> bool:
    try:
        return bool(process.status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True


def alive(process: psutil.Process) -> bool:
    """Running and not a zombie (a zombie holds nothing but its pid)."""
    return process.is_running() and not _is_zombie(process)


def _zombie_waiting() -> bool:
    """Whether any child is waiting to be collected, without collecting it (one syscall)."""
    try:
        waiting = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return waiting is not None


def reap_zombies() -> int:
    """Collect dead orphans re-parented to this process; returns how many were collected."""
    if not _zombie_waiting():
        return 0
    with _lock:
        roots = set(_roots)
    try:
        own_session = os.getsid(0)
    except OSError:
        return 0
    collected = 0
    for child in _children():
        if child.pid in roots or not _is_zombie(child):
            continue
        try:
            if os.getsid(child.pid) == own_session:
                continue  # not a container's: someone else in this program waits for it
            if os.waitpid(child.pid, os.WNOHANG)[0] == child.pid:
                collected += 1
        except (ChildProcessError, ProcessLookupError, PermissionError):
            continue
    return collected


def listening_in(tree: list[psutil.Process], port: int) -> bool | None:
    """Whether a process of `tree` holds a listening TCP socket on `port`; None when the OS
    would not show some process's sockets and none of the others listens."""
    unknown = False
    for process in tree:
        try:
            connections = process.net_connections(kind="tcp")
        except psutil.AccessDenied:
            unknown = True
            continue
        except psutil.Error:
            continue
        with contextlib.suppress(AttributeError):
            for connection in connections:
                if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
                    return True
    return None if unknown else False
