"""A running Docker container: its exit, its stop, its CPU and memory, its port.

Three threads per container keep the hot questions cheap: one waits on the daemon for the
container's exit (so `exit_code()`, asked every fraction of a second by the supervisor, reads a
field), one copies its output into its log file (`logs`), one samples its stats
(`stats`). An exit is reported once the container's last output is in its log (so a
FailureReason quotes it), or OUTPUT_GRACE_S after the exit at the latest.

Exit codes are Docker's: a container killed by a signal reports 128 + the signal (137 for
SIGKILL, which is also what going over the memory limit looks like; the log then says so).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import psutil

from polyhost.backends.base import ContainerStats, LaunchSpec
from polyhost.backends.docker.daemon import first_line
from polyhost.backends.docker.env import container_model_dir
from polyhost.backends.docker.log_copy import LogFollower
from polyhost.backends.docker.stats import StatsSampler
from polyhost.backends.local_container import LocalContainer
from polyhost.backends.proc import listening_in

if TYPE_CHECKING:
    from docker.models.containers import Container

log = logging.getLogger("polyhost.backends.docker")

OUTPUT_GRACE_S = 2.0
# How long a stop waits for the last output to reach the log file once the container is gone.
OUTPUT_WAIT_S = 5.0


class DockerContainer(LocalContainer):
    """One started container; `stop` removes it from the daemon."""

    output_grace_s = OUTPUT_GRACE_S
    output_wait_s = OUTPUT_WAIT_S
    output_poll_s = 0.02
    output_stuck = "its log stream did not end; closing it"
    logger = log

    def __init__(
        self,
        spec: LaunchSpec,
        container: Container,
        watcher: Container,
        follower: LogFollower,
        sampler: StatsSampler,
        limits_applied: str,
        *,
        pid: int,
        published: bool,
        on_stopped: Callable[[DockerContainer], None] | None = None,
    ) -> None:
        """`container` is bound to the client for short calls; `watcher` to the client
        without a timeout, for the wait that lasts as long as the container."""
        super().__init__(spec, limits_applied, follower, on_stopped)
        self._container = container
        self._follower = follower
        self._sampler = sampler
        self._pid = pid
        self._published = published
        self._code: int | None = None
        self._exited_at: float | None = None
        self._waiter = threading.Thread(
            target=self._wait, args=(watcher,), name=f"docker-wait:{spec.container_id}", daemon=True
        )
        self._waiter.start()

    @property
    def docker_id(self) -> str:
        return str(self._container.id)

    @property
    def name(self) -> str:
        return str(self._container.name)

    @property
    def container_model_dir(self) -> PurePosixPath:
        """Where the container sees its model folder (`ModelDirMounted`; `run.py` mounts it)."""
        return PurePosixPath(container_model_dir(self._spec))

    @property
    def log_follower(self) -> LogFollower:
        return self._follower

    def _wait(self, watcher: Container) -> None:
        """Blocks until the container stops (or is removed); records its exit code."""
        try:
            answer = watcher.wait()
            code = int(answer.get("StatusCode", -1))
        except Exception as error:  # removed under us, or the daemon went away
            log.debug("waiting for %s: %s", self.container_id, first_line(error))
            code = -1
        self._code = code
        self._exited_at = time.monotonic()
        self._sampler.stop()

    def exit_code(self) -> int | None:
        """None while running, and until its last output is in its log (or a grace passed)."""
        code, exited = self._code, self._exited_at
        if code is None or exited is None:
            return None
        return self._reported(code, exited)

    def _output_logged(self) -> bool:
        return self._follower.done

    async def _terminate(self, grace_s: float) -> None:
        """`docker stop` (SIGTERM, SIGKILL after `grace_s`), then remove it (`stop` runs it
        once)."""
        try:
            await asyncio.to_thread(self._stop_and_remove, grace_s)
            await self._finish_output()
        finally:
            self._sampler.stop()

    def _stop_and_remove(self, grace_s: float) -> None:
        import docker.errors

        try:
            if self._code is None:
                self._container.stop(timeout=max(math.ceil(grace_s), 0))
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as error:
            log.warning("stopping container %s: %s", self.container_id, first_line(error))
        try:
            self._container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as error:
            log.warning("removing container %s: %s", self.container_id, first_line(error))

    def stats(self) -> ContainerStats | None:
        """The last sample of the stats thread (None before the first, and once it stopped)."""
        if self._code is not None:
            return None
        return self._sampler.last

    def listens_on(self, port: int) -> bool | None:
        """Whether a process of the container listens on `port`.

        On the host's network the container's processes share the server's network namespace,
        so the sockets of its process tree (from the container's main pid on the host) say it.
        With a published port Docker's proxy holds the host port on the container's behalf:
        None (the ping answer is trusted), as when the OS does not let the server look.
        """
        if self._code is not None:
            return False
        if self._published or self._pid <= 0:
            return None
        try:
            root = psutil.Process(self._pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            return None
        return listening_in(tree, port)
