"""The process backend: every container is a child process of the server (the embedded default).

Each container runs in its own session and process group, so a stop reaches every process it
spawned (a serving stack with worker processes included) and a signal meant for the server
(Ctrl-C in a terminal) does not hit the containers. Output goes to a per-container log file.

`subprocess.Popen` rather than asyncio's subprocess support: the latter depends on the event
loop's child watcher, and polyhost must run on any loop (uvloop, the default loop, a test's).
Waiting is polling with `asyncio.sleep`, which costs nothing measurable at these rates.

Memory and CPU limits go through cgroups where the machine allows (see `cgroups`); failing
that, memory falls back to RLIMIT_AS set with prlimit(2) right after the start. Both are
applied from the parent just after the spawn, so no `preexec_fn` (unsafe in a threaded server)
is needed; the price is that the program's first instants (before the interpreter it starts
has even loaded) run outside its cgroup. Whatever was applied is reported in `limits_applied`,
and every requested limit that could not be applied is logged as a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from polyhost.backends import cgroups
from polyhost.backends.base import (
    ContainerHandle,
    ContainerStartError,
    ContainerStats,
    ImageNotFound,
    LaunchSpec,
    ResourceLimits,
)
from polyhost.backends.images import ImageEntry, ImageRegistry
from polyhost.backends.process_env import container_environment, stack_pythonpath
from polyhost.settings import Settings

log = logging.getLogger("polyhost.backends.process")

# After SIGKILL a process is gone within milliseconds; this only bounds a wait on a process the
# kernel cannot kill (uninterruptible I/O), so stop() still returns.
KILL_WAIT_S = 10.0


def _signal_group(pgid: int, sig: int) -> None:
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


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _live_member(pgid)


def _signal_pids(pids: set[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _total_memory() -> int:
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
        return self._popen.poll() is not None and not _group_alive(self._popen.pid)

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
        _signal_group(pgid, signal.SIGTERM)
        _signal_pids(self._placement.pids(), signal.SIGTERM)
        if not await self._wait_gone(max(grace_s, 0.0)):
            log.info("container %s ignored SIGTERM for %gs: killing it", self.container_id, grace_s)
            _signal_group(pgid, signal.SIGKILL)
            if not await self._wait_gone(KILL_WAIT_S):
                log.warning("container %s: processes survive SIGKILL", self.container_id)
        # Anything that left the process group (setsid) is still in the container's cgroups.
        deadline = time.monotonic() + 2.0
        while True:
            _signal_pids(self._placement.pids(), signal.SIGKILL)
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
            cpu_percent=cpu, rss_bytes=rss, memory_percent=100.0 * rss / _total_memory()
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


class ProcessBackend:
    """Starts containers as child processes; see the module docstring for the why."""

    def __init__(self, settings: Settings, images: ImageRegistry, *, cgroups: bool = True) -> None:
        self._settings = settings
        self._images = images
        # False: never create cgroups (memory then falls back to RLIMIT_AS, CPU is not limited).
        self._use_cgroups = cgroups
        self._live: dict[str, ProcessContainer] = {}

    @property
    def _run_dir(self) -> Path:
        return self._settings.state_dir / "run"

    def knows_image(self, image: str) -> bool:
        return self._images.knows_image(image)

    def image_limits(self, image: str) -> ResourceLimits:
        return self._images.limits(image)

    def known_images(self) -> list[str]:
        return self._images.known_images()

    def _resolve(self, image: str) -> ImageEntry:
        entry = self._images.resolve(image)
        if entry is None:
            raise ImageNotFound(
                f"Image {image} is not known to this server. Known images: "
                f"{', '.join(self._images.known_images())}."
            )
        return entry

    def _pythonpath_for(self, entry: ImageEntry) -> Path | None:
        """Another interpreter running a built-in stack needs to find the polyhost package."""
        if entry.builtin and entry.command[0] != sys.executable:
            return stack_pythonpath(self._settings.state_dir)
        return None

    async def start(self, spec: LaunchSpec) -> ContainerHandle:
        entry = self._resolve(spec.image)
        await self._retire(spec.container_id)
        work_dir = spec.work_dir or spec.log_path.parent
        try:
            work_dir.mkdir(parents=True, exist_ok=True)
            spec.log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file = open(spec.log_path, "ab")  # noqa: SIM115 - closed below, once started
        except OSError as error:
            raise ContainerStartError(
                f"cannot prepare the folders of container {spec.container_id}: "
                f"{error.strerror or error} ({error.filename})"
            ) from None
        env = container_environment(spec, extra_pythonpath=self._pythonpath_for(entry))
        placement = self._prepare_cgroups(spec)
        try:
            with log_file:
                popen = subprocess.Popen(
                    list(entry.command),
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=work_dir,
                    env=env,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as error:
            placement.remove()
            raise ContainerStartError(
                f"cannot run {entry.command[0]} for image {spec.image}: {error.strerror or error}"
            ) from None
        placement.add_process(popen.pid)
        applied = self._describe_limits(spec, popen.pid, placement)
        pidfile = self._write_pidfile(spec.container_id, popen.pid, placement)
        log.info(
            "started container %s (image %s, pid %d, port %d); limits: %s",
            spec.container_id,
            spec.image,
            popen.pid,
            spec.port,
            applied,
        )
        handle = ProcessContainer(spec, popen, placement, applied, pidfile, self._forget)
        self._live[spec.container_id] = handle
        return handle

    def _forget(self, handle: ProcessContainer) -> None:
        if self._live.get(handle.container_id) is handle:
            del self._live[handle.container_id]

    async def _retire(self, container_id: str) -> None:
        """Before a container starts again (a restart), end what is left of its previous run.

        When a container's main process dies, processes it started may live on in its group
        (holding its port, its memory) and its cgroup still exists; the new run must not
        share either. A previous run that is still fully alive is stopped gracefully.
        """
        previous = self._live.get(container_id)
        if previous is None or previous.stopped:
            return
        running = previous.exit_code() is None
        log.info(
            "container %s is started again: stopping what is left of its previous run",
            container_id,
        )
        await previous.stop(self._settings.stop_grace_s if running else 0.0)

    def _prepare_cgroups(self, spec: LaunchSpec) -> cgroups.Placement:
        if self._use_cgroups:
            return cgroups.prepare(spec.container_id, spec.limits)
        off = "cgroups are turned off"
        placement = cgroups.Placement()
        if spec.limits.memory_bytes is not None:
            placement.not_enforced[cgroups.MEMORY] = off
        if spec.limits.cpus is not None:
            placement.not_enforced[cgroups.CPU] = off
        return placement

    def _describe_limits(self, spec: LaunchSpec, pid: int, placement: cgroups.Placement) -> str:
        """Apply the fallbacks, warn about what is not enforced, and say what is."""
        limits = spec.limits
        if limits.memory_bytes is None and limits.cpus is None:
            return "no limits requested"
        parts = placement.descriptions()
        missing = dict(placement.not_enforced)
        memory_reason = missing.pop(cgroups.MEMORY, None)
        if memory_reason is not None and limits.memory_bytes is not None:
            size = cgroups.format_bytes(limits.memory_bytes)
            try:
                resource.prlimit(pid, resource.RLIMIT_AS, (limits.memory_bytes,) * 2)
                parts.append(f"memory: RLIMIT_AS={size} (address space, not resident) via prlimit")
                log.warning(
                    "container %s: memory limit %s only as RLIMIT_AS, %s",
                    spec.container_id,
                    size,
                    memory_reason,
                )
            except (OSError, ValueError) as error:
                parts.append(f"memory: not enforced ({memory_reason}; prlimit: {error})")
                log.warning(
                    "container %s: memory limit %s NOT enforced: %s; prlimit: %s",
                    spec.container_id,
                    size,
                    memory_reason,
                    error,
                )
        for name, reason in sorted(missing.items()):
            parts.append(f"{name}: not enforced ({reason})")
            log.warning("container %s: %s limit NOT enforced: %s", spec.container_id, name, reason)
        return "; ".join(parts)

    def _write_pidfile(self, container_id: str, pid: int, placement: cgroups.Placement) -> Path:
        """Record the process so a server restarted after a crash can stop what it left."""
        self._run_dir.mkdir(parents=True, exist_ok=True)
        path = self._run_dir / f"{container_id}.json"
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

    async def reap_orphans(self, grace_s: float) -> list[str]:
        """Stop containers a previous server run left behind (it was killed with SIGKILL).

        Containers live in their own sessions, so they outlive a server that could not stop
        them. Each is recognised by its pid *and* start time, so a recycled pid is never hit.
        Call it once at server start, before reconciling; containers this backend started are
        left alone. Returns the container ids that were stopped.
        """
        if not self._run_dir.is_dir():
            return []
        stopped: list[str] = []
        for path in sorted(self._run_dir.glob("*.json")):
            if path.stem in self._live:
                continue  # ours, started by this run
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                pid = int(record["pid"])
                created = float(record["create_time"])
                leaves = [Path(p) for p in record.get("cgroups", [])]
            except (OSError, ValueError, KeyError, TypeError):
                path.unlink(missing_ok=True)
                continue
            placement = cgroups.Placement(leaves=[cgroups.Leaf(leaf, 0, [], []) for leaf in leaves])
            if self._is_same_process(pid, created):
                await _terminate_orphan(pid, placement, grace_s)
                stopped.append(path.stem)
            else:
                _signal_pids(placement.pids(), signal.SIGKILL)
            placement.remove()
            path.unlink(missing_ok=True)
        if stopped:
            log.warning("stopped %d container(s) left by a previous run", len(stopped))
        return stopped

    @staticmethod
    def _is_same_process(pid: int, created: float) -> bool:
        try:
            return abs(psutil.Process(pid).create_time() - created) < 0.01
        except psutil.Error:
            return False


async def _terminate_orphan(pgid: int, placement: cgroups.Placement, grace_s: float) -> None:
    """stop() for a process that is not our child: we can signal it but not reap it."""
    _signal_group(pgid, signal.SIGTERM)
    _signal_pids(placement.pids(), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _group_alive(pgid) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    _signal_group(pgid, signal.SIGKILL)
    _signal_pids(placement.pids(), signal.SIGKILL)
    deadline = time.monotonic() + KILL_WAIT_S
    while _group_alive(pgid) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
