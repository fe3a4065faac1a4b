"""Reaching the Docker daemon, and saying clearly why it cannot be reached.

The Docker SDK is an optional extra (`pip install 'polyhost[docker]'`), imported here and only
when the Docker backend or `polyhost images build` is used, so the process backend never needs
it. The daemon is found as the `docker` CLI finds it: DOCKER_HOST (and DOCKER_TLS_VERIFY,
DOCKER_CERT_PATH), else the default socket. When DOCKER_HOST is unset and the default socket
does not answer, the socket of the daemon polyhost's own `scripts/docker-up.sh` starts (for
`make test`, beside a system daemon it must not disturb) is tried too, so a server started
after the tests finds the daemon they used without any variable set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from docker import DockerClient

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
# Where scripts/docker-up.sh starts dockerd when no daemon answers (its POLYHOST_DOCKER_RUN).
POLYHOST_SOCKET = "unix:///run/polyhost/docker.sock"
# Seconds one API call may take. Long enough for a stop (grace + kill) to finish on a loaded
# machine; calls that legitimately block longer (wait, logs, stats, build) pass their own.
API_TIMEOUT_S = 120
INSTALL_HINT = "install the Docker SDK for Python: pip install 'polyhost[docker]'"


class DaemonUnavailable(Exception):
    """The Docker SDK is missing or the daemon does not answer; the message says what to do."""


# The address the last successful connect() reached, so messages name the daemon in use.
_reached: str | None = None


def where() -> str:
    """The daemon address in use, for messages."""
    return os.environ.get("DOCKER_HOST") or _reached or DEFAULT_SOCKET


def candidates(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The addresses tried, in order: DOCKER_HOST alone when it is set (the user chose it),
    else the default socket, then polyhost's own."""
    environ = os.environ if environ is None else environ
    host = environ.get("DOCKER_HOST")
    return (host,) if host else (DEFAULT_SOCKET, POLYHOST_SOCKET)


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
    global _reached
    tried = candidates()
    failures: list[str] = []
    for address in tried:
        try:
            # The SDK takes None (no timeout) although its stubs say int.
            if os.environ.get("DOCKER_HOST"):
                client = docker.from_env(timeout=cast(Any, timeout_s), max_pool_size=max_pool_size)
            else:
                client = docker.DockerClient(
                    base_url=address, timeout=cast(Any, timeout_s), max_pool_size=max_pool_size
                )
            client.ping()
        except (docker.errors.DockerException, requests.RequestException) as error:
            failures.append(f"{address} ({first_line(error)})")
            continue
        _reached = address
        return client
    if len(tried) == 1:
        raise DaemonUnavailable(
            f"the Docker daemon at {failures[0]} does not answer; start it "
            "(e.g. `systemctl start docker`), or point DOCKER_HOST at a running one"
        )
    raise DaemonUnavailable(
        f"no Docker daemon answers: tried {'; '.join(failures)}. Start one (e.g. `systemctl "
        "start docker`, or scripts/docker-up.sh in a polyhost checkout), or set DOCKER_HOST "
        f"to the one you run (e.g. DOCKER_HOST={POLYHOST_SOCKET} for the daemon `make test` "
        "starts)"
    )


def first_line(error: BaseException) -> str:
    """The first line of an SDK error, without the request URL noise around it."""
    text = str(getattr(error, "explanation", None) or error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
