"""Helpers for tests that start real containers with the process backend, in the test process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil

from polyhost.backends.base import LaunchSpec, ResourceLimits
from polyhost.backends.process.backend import ProcessBackend
from polyhost.backends.registry import ImageRegistry
from polyhost.settings import Settings
from tests.support.server import CONTAINERS, free_port

FAULTY = [sys.executable, str(CONTAINERS / "faulty.py")]
ECHO = [sys.executable, str(CONTAINERS / "echo_server.py")]


def backend_for(
    tmp_path: Path,
    images: Mapping[str, list[str]],
    *,
    cgroups: bool = True,
    **settings: Any,
) -> ProcessBackend:
    """A process backend whose images.toml registers `images` (name → command)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "images.toml"
    config.write_text(
        "".join(
            f'[images."{name}"]\ncommand = {json.dumps(cmd)}\n' for name, cmd in images.items()
        ),
        encoding="utf-8",
    )
    state = Settings(state_dir=tmp_path / "state", **settings)
    return ProcessBackend(state, ImageRegistry.load(config), cgroups=cgroups)


def launch_spec(
    tmp_path: Path,
    image: str,
    environment: Mapping[str, str] | None = None,
    *,
    name: str = "c1",
    limits: ResourceLimits | None = None,
    role: str | None = None,
) -> LaunchSpec:
    port = free_port()
    folder = tmp_path / "containers" / name
    return LaunchSpec(
        container_id=f"test-{os.getpid()}-{name}",
        image=image,
        environment=dict(environment or {}),
        model_dir=None,
        host="127.0.0.1",
        port=port,
        safe_port_range=(port + 1, port + 3),
        log_path=folder / "container.log",
        limits=limits or ResourceLimits(),
        work_dir=folder,
        execution_role_arn=role,
    )


async def wait_for(predicate: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Wait for an event; the bound only turns a hang into a failure and is never asserted."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def gone(pid: int) -> bool:
    """Dead: no such process, or a zombie (which holds nothing but its pid)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
