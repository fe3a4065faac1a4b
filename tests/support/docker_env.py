"""Where the tests find a Docker daemon and the base image to build on.

`scripts/docker-up.sh` (run by `make test`) makes sure a daemon runs and writes what it found
into `build/docker-test.env` (`DOCKER_HOST=...`, `POLYHOST_TEST_BASE_IMAGE=...`); the
environment beats the file. Without a daemon the Docker tests are skipped, each with the reason
(`pytest -ra` lists it), never silently.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = ROOT / "build" / "docker-test.env"
DEFAULT_BASE_IMAGE = "python:3.11-slim"


def file_values(path: Path = ENV_FILE) -> dict[str, str]:
    """KEY=VALUE lines of the file the set-up script writes (none when it is missing)."""
    values: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            values[key] = value
    return values


def setting(name: str, default: str = "") -> str:
    return os.environ.get(name) or file_values().get(name) or default


def apply() -> None:
    """Put DOCKER_HOST into this process's environment (servers started by tests inherit it)."""
    host = setting("DOCKER_HOST")
    if host:
        os.environ["DOCKER_HOST"] = host


def base_image() -> str:
    return setting("POLYHOST_TEST_BASE_IMAGE", DEFAULT_BASE_IMAGE)
