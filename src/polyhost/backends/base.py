"""The interface every backend implements: start a container from a spec, stop it, observe it.

The deployer and the router only ever see `Backend` and `ContainerHandle`; whether a container
is a child process or an OCI container is the backend's business (ARCHITECTURE.md principle 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class ResourceLimits:
    memory_bytes: int | None = None
    cpus: float | None = None


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one container."""

    container_id: str  # unique and filesystem-safe, e.g. "ep1.AllTraffic.0.pytorch-mnist"
    image: str
    environment: Mapping[str, str]
    model_dir: Path | None  # extracted ModelDataUrl, seen by the container as its model dir
    host: str  # loopback address the container binds
    port: int  # SAGEMAKER_BIND_TO_PORT
    safe_port_range: tuple[int, int]  # SAGEMAKER_SAFE_PORT_RANGE, inclusive
    log_path: Path
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    # The container's working folder; the log file's folder when not given.
    work_dir: Path | None = None
    # The model's ExecutionRoleArn: the container gets that role's credentials, if mapped.
    execution_role_arn: str | None = None


@dataclass(frozen=True)
class ContainerStats:
    cpu_percent: float  # % of one CPU, summed over the container's processes (100 = one core)
    rss_bytes: int
    memory_percent: float


class ContainerHandle(Protocol):
    """A started container."""

    @property
    def container_id(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def limits_applied(self) -> str:
        """Human-readable account of which resource limits the OS actually enforces."""
        ...

    def exit_code(self) -> int | None:
        """None while running; the exit status (negative = signal) once it has stopped."""
        ...

    async def stop(self, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after `grace_s`; returns once it is gone."""
        ...

    def stats(self) -> ContainerStats | None:
        """CPU and memory now, or None when it cannot be read (e.g. already stopped)."""
        ...

    def listens_on(self, port: int) -> bool | None:
        """Whether the container itself listens on `port`; None when the backend cannot tell."""
        ...


class ImageNotFound(Exception):
    """The image is not known to this backend; the message names the known images."""


class ContainerStartError(Exception):
    """The container's program could not be launched; the message says why (no secrets)."""


class Backend(Protocol):
    """What the deployer and the server ask of any backend (process, Docker, Ray)."""

    def knows_image(self, image: str) -> bool: ...

    def image_limits(self, image: str) -> ResourceLimits:
        """The resource limits configured for every container of `image`."""
        ...

    def known_images(self) -> list[str]: ...

    async def start(self, spec: LaunchSpec) -> ContainerHandle: ...

    async def reap_orphans(self, grace_s: float) -> list[str]:
        """Stop containers a killed predecessor left behind; returns their ids. Called once at
        start, before reconciling; never touches containers this backend did not start."""
        ...
