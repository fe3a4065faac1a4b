"""Reaching the Docker daemon, and saying clearly why it cannot be reached.

The Docker SDK is an optional extra (`pip install 'polyhost[docker]'`), imported here and only
when the Docker backend or `polyhost images build` is used, so the process backend never needs
it. The daemon is found as the `docker` CLI finds it: DOCKER_HOST (and DOCKER_TLS_VERIFY,
DOCKER_CERT_PATH), else the default socket.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from docker import DockerClient

# Seconds one API call may take. Long enough for a stop (grace + kill) to finish on a loaded
# machine; calls that legitimately block longer (wait, logs, stats, build) pass their own.
API_TIMEOUT_S = 120
INSTALL_HINT = "install the Docker SDK for Python: pip install 'polyhost[docker]'"


class DaemonUnavailable(Exception):
    """The Docker SDK is missing or the daemon does not answer; the message says what to do."""


def where() -> str:
    """The daemon address in use, for messages."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect(timeout_s: int | None = API_TIMEOUT_S, max_pool_size: int = 10) -> DockerClient:
    """A client whose daemon answered a ping; DaemonUnavailable says why not.

    `timeout_s` None: no timeout, for calls that last as long as a container (wait, logs).
    """
    try:
        import docker
        import docker.errors
        import requests
    except ImportError:
        raise DaemonUnavailable(
            f"the Docker backend needs the Docker SDK; {INSTALL_HINT}"
        ) from None
    try:
        # The SDK takes None (no timeout) although its stubs say int.
        client = docker.from_env(timeout=cast(Any, timeout_s), max_pool_size=max_pool_size)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as error:
        raise DaemonUnavailable(
            f"the Docker daemon at {where()} does not answer ({first_line(error)}); start it "
            "(e.g. `systemctl start docker`), or point DOCKER_HOST at a running one"
        ) from None
    return client


def first_line(error: BaseException) -> str:
    """The first line of an SDK error, without the request URL noise around it."""
    text = str(getattr(error, "explanation", None) or error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
