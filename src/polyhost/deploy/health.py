"""The contract's health check: `GET /ping` must answer 200 (within 2 s, as SageMaker asks).

Used twice: at start, polled until a container first answers (`wait_healthy`), and while it
serves, once per interval (`HealthWatch`, driven by the supervisor): a live process whose
`/ping` fails `failures` checks in a row is taken for hung and restarted. One check is one
short-lived connection bounded by PING_TIMEOUT_S, so a container that stops answering costs its
supervisor a wait, never the event loop.

At start, an answer only counts once the container is seen holding its port: a port is only
known free when it is handed out, and on a machine shared with other servers someone else may
bind it before the container does, then answer `/ping` in its place. That collision is told
apart from a container that is merely unhealthy by who listens: a collision is a port that is
not free *and* not held by the container (`port_taken_by_another`, raised as `PortTaken`, which
the starter answers with a fresh port); a container that listens (or a port nobody listens on)
is a failing health check. Those bind(2) probes only mean something on this machine: a
container on another node (Ray) is judged by what its agent sees.

An isolated instance's containers (`confinement.py`) listen in the instance's own network, so
the ping connects through it (`connector`), and no collision is possible there: the probes,
which would look at the host's ports, are skipped.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from polyhost.backends.base import ContainerHandle, lost_reason, node_of
from polyhost.deploy.failure import DeployFailure, PortTaken, failure_with_log
from polyhost.deploy.ports import port_is_held
from polyhost.deploy.running import RunningContainer

log = logging.getLogger("polyhost.deploy")

PING_TIMEOUT_S = 2.0
# A status line longer than this is not HTTP; reading stops there.
MAX_STATUS_LINE = 1024
# How many polls in a row must see the port held by someone else before it counts as taken
# (a container's own bind() comes a moment before its listen(), when the OS cannot tell yet).
TAKEN_POLLS = 2


Connect = Callable[[str, int], Awaitable[socket.socket]]


def connector(container: RunningContainer) -> Connect | None:
    """How to reach the container: through its instance's network when it has one."""
    network = container.launch.network
    return None if network is None else network.connect


async def ping(
    host: str, port: int, timeout: float = PING_TIMEOUT_S, *, connect: Connect | None = None
) -> bool:
    """True when the container answers `/ping` with 200; any failure is simply False.
    `connect` opens the connection where the loop cannot (an instance's own network)."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            if connect is None:
                reader, writer = await asyncio.open_connection(host, port, limit=MAX_STATUS_LINE)
            else:
                sock = await connect(host, port)
                reader, writer = await asyncio.open_connection(sock=sock, limit=MAX_STATUS_LINE)
            writer.write(
                f"GET /ping HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
            )
            status_line = await reader.readline()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()
    parts = status_line.split(b" ", 2)
    return len(parts) >= 2 and parts[1] == b"200"


@dataclass
class HealthWatch:
    """When the next check of one serving container is due, and its failures in a row."""

    interval_s: float
    failures_allowed: int
    due: float  # loop time of the next check
    failures: int = 0

    def record(self, healthy: bool, now: float) -> bool:
        """Note one check's outcome; True when the failures in a row reached the threshold."""
        self.due = now + self.interval_s
        self.failures = 0 if healthy else self.failures + 1
        return self.failures >= self.failures_allowed


def port_taken_by_another(handle: ContainerHandle) -> bool:
    """True when the container's port is held, and not by the container (a collision).

    Only answerable on this machine: for a container on another node, False."""
    if node_of(handle) is not None:
        return False
    if not port_is_held(handle.host, handle.port):
        return False  # nobody holds it: the container has not bound it (yet), or it died
    if handle.listens_on(handle.port) is not False:
        return False  # the container holds it, or the OS cannot say: trust the container
    return port_is_held(handle.host, handle.port)  # still held, and not by the container


async def wait_healthy(
    container: RunningContainer,
    handle: ContainerHandle,
    timeout_s: float,
    *,
    started: float | None = None,
) -> None:
    """Poll `/ping` until 200; fail fast if the process exits, or at `started + timeout_s`.

    Raises PortTaken when another process holds the container's port (it answers `/ping` in
    the container's place, or keeps the container from binding), DeployFailure otherwise.
    Until the container is seen holding its port, each poll checks who holds it: a bind(2)
    probe, and the (dearer) listener lookup only when the port is held.
    """
    loop = asyncio.get_running_loop()
    if started is None:
        started = loop.time()
    deadline = started + timeout_s
    hostname = container.spec.hostname
    variant = container.variant.variant_name
    port = handle.port
    taken_polls = 0
    remote = node_of(handle) is not None
    connect = connector(container)
    # In an instance's own network nobody else can hold the port: no probe is needed.
    owns_port = connect is not None
    while True:
        lost = lost_reason(handle)
        if lost is not None:
            raise DeployFailure(
                f"Container {hostname} for production variant {variant} could not start: {lost}."
            )
        code = handle.exit_code()
        if code is not None:
            if connect is None and port_taken_by_another(handle):
                raise PortTaken(
                    f"Container {hostname} for production variant {variant} could not bind "
                    f"port {port}: another process holds it."
                )
            raise failure_with_log(
                f"Container {hostname} for production variant {variant} exited with code {code} "
                "before it passed the ping health check.",
                container.launch.log_path,
            )
        remaining = deadline - loop.time()
        answered = await ping(
            handle.host, port, timeout=min(PING_TIMEOUT_S, max(remaining, 0.05)), connect=connect
        )
        if remote:
            # The agent on the node says whether the container holds its port (None: not yet
            # known, and the answer is trusted as on a machine that cannot tell).
            owns_port = handle.listens_on(port) is not False
        elif not owns_port and port_is_held(handle.host, port):
            listens = handle.listens_on(port)
            # None: the OS does not say who listens; the answer is then trusted.
            owns_port = listens is not False
            # Someone else's process on the port (it was taken between allocation and the
            # container's bind) must never be routed to: the container will not get the port.
            taken_polls = 0 if owns_port else taken_polls + 1
            if taken_polls >= TAKEN_POLLS:
                log.warning("port %d of container %s is held by another process", port, hostname)
                raise PortTaken(
                    f"Container {hostname} for production variant {variant} could not use "
                    f"port {port}: another process holds it."
                )
        if answered and owns_port:
            return
        now = loop.time()
        if now >= deadline:
            raise failure_with_log(
                f"Container {hostname} for production variant {variant} did not pass the ping "
                f"health check within {timeout_s:g} seconds.",
                container.launch.log_path,
            )
        # Poll quickly at first (light containers are up in tens of ms), then back off.
        await asyncio.sleep(min(0.01 if now - started < 1 else 0.1, deadline - now))
