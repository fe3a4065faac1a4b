"""The start's health check, on handles whose answers the test sets: who holds the port, exits,
and a remote container lost with its node.

The bind(2) probes are real (a listening socket stands in for someone else's server); the
containers are not, so each case is told apart without starting a process.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyhost.backends.base import ContainerStats, LaunchSpec
from polyhost.control.seam import ContainerSpec, VariantSpec
from polyhost.deploy.failure import DeployFailure, PortTaken
from polyhost.deploy.health import port_taken_by_another, wait_healthy
from polyhost.deploy.running import RunningContainer
from polyhost.logs.streams import LogStream


class Handle:
    """A container on this machine that never answers /ping; its exit and sockets are set."""

    def __init__(self, port: int, *, listens: bool | None = False) -> None:
        self.code: int | None = None
        self._port = port
        self._listens = listens

    @property
    def container_id(self) -> str:
        return "ep.r1.AllTraffic.i-0.c"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._port

    @property
    def limits_applied(self) -> str:
        return "none"

    def exit_code(self) -> int | None:
        return self.code

    async def stop(self, grace_s: float) -> None:
        self.code = -15

    def stats(self) -> ContainerStats | None:
        return None

    def listens_on(self, port: int) -> bool | None:
        return self._listens


class RemoteHandle(Handle):
    """The same, on another node (a `NodePlaced` handle)."""

    reason: str | None = None

    @property
    def node(self) -> str:
        return "10.0.0.7"

    def lost(self) -> str | None:
        return self.reason

    @property
    def adopted(self) -> bool:
        return False


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port someone else's server listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as stranger:
        stranger.bind(("127.0.0.1", 0))
        stranger.listen()
        yield int(stranger.getsockname()[1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def running(tmp_path: Path, port: int) -> RunningContainer:
    log_path = tmp_path / "container.log"
    spec = ContainerSpec("c", "polyhost-test/none:1")
    launch = LaunchSpec(
        container_id="ep.r1.AllTraffic.i-0.c",
        image=spec.image,
        environment={},
        model_dir=None,
        host="127.0.0.1",
        port=port,
        safe_port_range=(port + 1, port + 9),
        log_path=log_path,
    )
    variant = VariantSpec("AllTraffic", "m", (spec,), "Serial")
    stream = LogStream("ep", "AllTraffic", "i-0", "c", log_path)
    return RunningContainer(spec, variant, launch, stream, startup_timeout_s=5.0)


def test_a_port_held_by_another_process_is_a_collision(held_port: int) -> None:
    assert port_taken_by_another(Handle(held_port, listens=False))
    # The container holds it, or the OS cannot say: the container is trusted.
    assert not port_taken_by_another(Handle(held_port, listens=True))
    assert not port_taken_by_another(Handle(held_port, listens=None))


def test_a_port_nobody_holds_is_no_collision() -> None:
    assert not port_taken_by_another(Handle(free_port(), listens=False))


def test_the_port_of_a_container_on_another_node_is_not_judged_here(held_port: int) -> None:
    assert not port_taken_by_another(RemoteHandle(held_port, listens=False))


def test_an_exit_on_a_port_someone_else_holds_is_port_taken(tmp_path: Path, held_port: int) -> None:
    handle = Handle(held_port, listens=False)
    handle.code = 1
    with pytest.raises(PortTaken, match=f"could not bind port {held_port}"):
        asyncio.run(wait_healthy(running(tmp_path, held_port), handle, 5.0))


def test_an_exit_before_the_ping_quotes_the_log(tmp_path: Path) -> None:
    port = free_port()
    container = running(tmp_path, port)
    container.launch.log_path.write_text("Traceback: no model here\n")
    handle = Handle(port)
    handle.code = 3
    with pytest.raises(DeployFailure) as failure:
        asyncio.run(wait_healthy(container, handle, 5.0))
    assert not isinstance(failure.value, PortTaken)
    assert failure.value.reason == (
        "Container c for production variant AllTraffic exited with code 3 before it passed "
        "the ping health check. Last log lines: Traceback: no model here"
    )


def test_a_container_lost_with_its_node_fails_at_once_naming_it(tmp_path: Path) -> None:
    port = free_port()
    handle = RemoteHandle(port)
    handle.reason = "node 10.0.0.7 was lost"
    with pytest.raises(DeployFailure) as failure:
        asyncio.run(wait_healthy(running(tmp_path, port), handle, 5.0))
    assert failure.value.reason == (
        "Container c for production variant AllTraffic could not start: node 10.0.0.7 was lost."
    )
