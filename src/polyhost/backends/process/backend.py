"""The process backend: every container is a child process of the server (the embedded default).

Each container runs in its own session and process group, so a stop reaches every process it
spawned (a serving stack with worker processes included) and a signal meant for the server
(Ctrl-C in a terminal) does not hit the containers. Whatever leaves that group (a double fork
with `setsid`) is still found: through the container's cgroup, which every container gets when
the machine allows one, limits or not, and otherwise because the server is a child subreaper and
the escaped process carries its container's run id (`proc.py`).

A container's stdout and stderr are one pipe that a thread copies into its log file, rotated by
size and rate-limited (`logs/pump.py`, `logs/files.py`), so no container can fill the disk.

`subprocess.Popen` rather than asyncio's subprocess support: the latter depends on the event
loop's child watcher, and polyhost must run on any loop (uvloop, the default loop, a test's).
Waiting is polling with `asyncio.sleep`, which costs nothing measurable at these rates.

Memory and CPU limits go through cgroups where the machine allows (see `cgroups`); failing
that, memory falls back to RLIMIT_AS set with prlimit(2) right after the start. Both are
applied from the parent just after the spawn, so no `preexec_fn` (unsafe in a threaded server)
is needed; the price is that the program's first instants (before the interpreter it starts
has even loaded) run outside its cgroup. Whatever was applied is reported in `limits_applied`,
and every requested limit that could not be applied is logged as a warning.

A container gets the credentials of its model's ExecutionRoleArn when the server maps that role
(`role_credentials.py`), and never the server's own (`env.py`).

Isolated (`confinement.py`): an instance's containers are born in its network namespace
(`netns.py`: the spawn runs on a worker thread that entered it, so the child starts there and no
`preexec_fn` is needed), and run as the instance's user, which `subprocess` switches to in the
child before the program runs (`user`, `group`, no supplementary groups).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from polyhost.backends import cgroups, proc
from polyhost.backends.base import (
    ContainerHandle,
    ContainerStartError,
    InstanceNetwork,
    LaunchSpec,
)
from polyhost.backends.container_log import open_container_log
from polyhost.backends.local_container import LiveContainers
from polyhost.backends.netns import NamespaceError, NetworkNamespace
from polyhost.backends.process.container import ProcessContainer
from polyhost.backends.process.env import container_environment, stack_pythonpath
from polyhost.backends.process.orphans import reap, write_pidfile
from polyhost.backends.registry import ImageEntry, ImageRegistry, RegistryImages
from polyhost.backends.role_credentials import (
    AwsCredentials,
    RoleCredentials,
    RoleCredentialsError,
    load_role_credentials,
)
from polyhost.logs.pump import LogPump
from polyhost.settings import Settings

log = logging.getLogger("polyhost.backends.process")

# How often dead orphans re-parented to the server are collected (one syscall when there are none).
REAP_EVERY_S = 1.0


def cgroup_name(container_id: str, run_id: str) -> str:
    """The cgroup of one run of a container: `<container_id>@<run id prefix>`.

    Container ids repeat across servers on one machine (the same endpoint deployed by two
    servers, or by two test runs) and across runs of one server; the cgroup must not, or
    stopping (or reaping) one would signal every process in the other's.
    """
    return f"{container_id}@{run_id[:12]}"


class ProcessBackend(RegistryImages):
    """Starts containers as child processes; see the module docstring for the why."""

    def __init__(
        self,
        settings: Settings,
        images: ImageRegistry,
        *,
        cgroups: bool = True,
        role_credentials: RoleCredentials | None = None,
    ) -> None:
        """`role_credentials` defaults to loading `settings.role_credentials`, which raises
        RoleCredentialsError (naming the role) for a bad file: the server must not start."""
        self._settings = settings
        self._images = images
        # False: never create cgroups (memory then falls back to RLIMIT_AS, CPU is not limited,
        # escaped processes are found through the subreaper alone).
        self._use_cgroups = cgroups
        self._roles = (
            role_credentials
            if role_credentials is not None
            else load_role_credentials(settings.role_credentials)
        )
        self._roles_told: set[str] = set()
        self._live: LiveContainers[ProcessContainer] = LiveContainers()
        self._subreaper = proc.become_subreaper()
        self._reaper: asyncio.Task[None] | None = None

    @property
    def _run_dir(self) -> Path:
        return self._settings.state_dir / "run"

    def _resolve(self, image: str) -> ImageEntry:
        entry = self._images.resolve(image)
        if entry is None:
            raise self._images.not_known(image)
        return entry

    def _pythonpath_for(self, entry: ImageEntry) -> Path | None:
        """Another interpreter running a built-in stack needs to find the polyhost package."""
        if entry.builtin and entry.command[0] != sys.executable:
            return stack_pythonpath(self._settings.state_dir)
        return None

    async def start(self, spec: LaunchSpec) -> ContainerHandle:
        entry = self._resolve(spec.image)
        namespace = None if spec.network is None else _namespace(spec.network)
        await self._retire(spec.container_id)
        self._keep_reaping()
        credentials = await self._credentials(spec)
        work_dir = spec.work_dir or spec.log_path.parent
        logfile = open_container_log(spec, self._settings, work_dir)
        run_id = secrets.token_hex(16)
        env = container_environment(
            spec,
            extra_pythonpath=self._pythonpath_for(entry),
            region=self._settings.region,
            credentials=credentials,
            run_id=run_id,
        )
        placement = self._prepare_cgroups(spec, run_id)
        # Recorded before the spawn: a server killed right after it still leaves a record.
        pidfile = write_pidfile(self._run_dir, spec.container_id, None, placement, run_id)
        read_fd, write_fd = os.pipe()
        user = spec.user

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                list(entry.command),
                stdin=subprocess.DEVNULL,
                stdout=write_fd,
                stderr=subprocess.STDOUT,
                cwd=work_dir,
                env=env,
                start_new_session=True,
                close_fds=True,
                user=None if user is None else user.uid,
                group=None if user is None else user.gid,
                extra_groups=None if user is None else [],
            )

        try:
            if namespace is None:
                popen = spawn()
            else:
                popen = await asyncio.to_thread(_spawn_in, namespace, spawn)
        except OSError as error:
            os.close(read_fd)
            logfile.close()
            placement.remove()
            pidfile.unlink(missing_ok=True)
            who = "" if user is None else f" as user {user.uid} (--container-user)"
            raise ContainerStartError(
                f"cannot run {entry.command[0]} for image {spec.image}{who}: "
                f"{error.strerror or error}"
            ) from None
        finally:
            os.close(write_fd)  # the child holds its own copy; EOF comes when its tree is gone
        proc.register_root(popen.pid)
        pump = LogPump(read_fd, logfile, spec.container_id)
        pump.start()
        placement.add_process(popen.pid)
        applied = self._enforce_limits(spec, popen.pid, placement)
        write_pidfile(self._run_dir, spec.container_id, popen.pid, placement, run_id)
        log.info(
            "started container %s (image %s, pid %d, port %d); limits: %s",
            spec.container_id,
            spec.image,
            popen.pid,
            spec.port,
            applied,
        )
        handle = ProcessContainer(
            spec, popen, placement, applied, pidfile, self._live.forget, run_id=run_id, pump=pump
        )
        self._live.add(handle)
        return handle

    async def open_network(self, instance_key: str) -> InstanceNetwork:
        """A network namespace of the instance's own (`NetworkIsolator`)."""
        try:
            return await asyncio.to_thread(NetworkNamespace.create, f"instance {instance_key}")
        except NamespaceError as error:
            raise ContainerStartError(
                f"cannot make a network namespace for instance {instance_key}: {error}"
            ) from None

    async def _credentials(self, spec: LaunchSpec) -> AwsCredentials | None:
        """The credentials of the container's role, resolved now (off the event loop)."""
        role = spec.execution_role_arn
        if not self._roles.knows(role):
            self._tell_no_credentials(role)
            return None
        try:
            return await asyncio.to_thread(self._roles.resolve, role)
        except RoleCredentialsError as error:
            raise ContainerStartError(str(error)) from None

    def _tell_no_credentials(self, role: str | None) -> None:
        """Say once per role that its containers run without AWS credentials."""
        if role is None or role in self._roles_told:
            return
        self._roles_told.add(role)
        if self._roles.path is None:
            log.info(
                "containers of model role %s get no AWS credentials (no --role-credentials "
                "file maps roles to credentials)",
                role,
            )
        else:
            log.warning(
                "model role %s has no credentials configured in %s: its containers get no AWS "
                "credentials",
                role,
                self._roles.path,
            )

    def _keep_reaping(self) -> None:
        """Collect dead orphans re-parented to the server, on the running loop, from now on."""
        if not self._subreaper:
            return
        loop = asyncio.get_running_loop()
        if self._reaper is not None and not self._reaper.done() and self._reaper.get_loop() is loop:
            return
        self._reaper = loop.create_task(self._reap_forever())

    @staticmethod
    async def _reap_forever() -> None:
        while True:
            await asyncio.sleep(REAP_EVERY_S)
            with contextlib.suppress(OSError):
                proc.reap_zombies()

    async def _retire(self, container_id: str) -> None:
        """Before a container starts again (a restart), end what is left of its previous run.

        When a container's main process dies, processes it started may live on in its group
        (holding its port, its memory) and its cgroup still exists; the new run must not
        share either. A previous run that is still fully alive is stopped gracefully.
        """
        previous = self._live.previous(container_id)
        if previous is None:
            return
        log.info(
            "container %s is started again: stopping what is left of its previous run",
            container_id,
        )
        await previous.retire(self._settings.stop_grace_s)

    def _prepare_cgroups(self, spec: LaunchSpec, run_id: str) -> cgroups.Placement:
        if self._use_cgroups:
            return cgroups.prepare(cgroup_name(spec.container_id, run_id), spec.limits)
        off = "cgroups are turned off"
        placement = cgroups.Placement()
        if spec.limits.memory_bytes is not None:
            placement.not_enforced[cgroups.MEMORY] = off
        if spec.limits.cpus is not None:
            placement.not_enforced[cgroups.CPU] = off
        return placement

    def _enforce_limits(self, spec: LaunchSpec, pid: int, placement: cgroups.Placement) -> str:
        """Apply the fallbacks (RLIMIT_AS by prlimit), warn about what is not enforced, and
        return an account of what is."""
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

    async def reap_orphans(self, grace_s: float) -> list[str]:
        """Stop containers a previous server run left behind (see `orphans.reap`)."""
        return await reap(self._run_dir, self._live.ids(), grace_s)


def _namespace(network: InstanceNetwork) -> NetworkNamespace:
    if not isinstance(network, NetworkNamespace):
        raise ContainerStartError(f"{network.description} is not a network namespace")
    return network


def _spawn_in(
    network: NetworkNamespace, spawn: Callable[[], subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    """Fork from this (worker) thread while it is in the namespace: the child starts there."""
    with network.entered():
        return spawn()
