"""The group starter: port collisions apart from failing health checks, one deadline.

A port is only known free when it is handed out; another process may bind it before the
container does. The group must never take that stranger's `/ping` for the container's, and
must start the container again on a fresh port. A container that holds its port (or a port
nobody holds) and does not pass /ping is a failing health check, not a collision: it is started
once, and fails at its startup timeout, which the FailureReason states.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from polyhost.backends.base import ContainerHandle, LaunchSpec, ResourceLimits
from polyhost.backends.process.backend import ProcessBackend
from polyhost.backends.registry import ImageRegistry
from polyhost.control.seam import ContainerSpec, EndpointSpec, VariantSpec
from polyhost.deploy.failure import DeployFailure
from polyhost.deploy.ports import PortAllocator
from polyhost.deploy.running import RunningGroup
from polyhost.deploy.starter import GroupStarter
from polyhost.modeldata.store import ArtifactStore
from polyhost.router.upstream import UpstreamPool
from polyhost.settings import Settings
from tests.support.endpoints import echo_container
from tests.support.server import ECHO_IMAGE, FAULTY_IMAGE, write_image_config


class Stranger(BaseHTTPRequestHandler):
    """Someone else's server: healthy, and answers every request as 'stranger'."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Length", "8")
        self.end_headers()
        self.wfile.write(b"stranger")

    def log_message(self, format: str, *args: object) -> None:
        return


class FirstPortTaken(PortAllocator):
    """Hands out the stranger's port first, as if it had been taken right after allocation."""

    def __init__(self, taken: int) -> None:
        super().__init__()
        self._taken_port: int | None = taken

    def allocate(self) -> tuple[int, tuple[int, int]]:
        if self._taken_port is not None:
            port, self._taken_port = self._taken_port, None
            return port, (port + 1, port + 9)
        return super().allocate()


def test_a_stranger_on_the_port_is_never_mistaken_for_the_container(tmp_path: Path) -> None:
    stranger = HTTPServer(("127.0.0.1", 0), Stranger)
    threading.Thread(target=stranger.serve_forever, daemon=True).start()
    taken = stranger.server_address[1]
    settings = Settings(state_dir=tmp_path / "state", stop_grace_s=2, default_startup_timeout_s=20)
    images = ImageRegistry.load(write_image_config(tmp_path / "images.toml"))
    starter = GroupStarter(
        backend=ProcessBackend(settings, images, cgroups=False),
        artifacts=ArtifactStore(tmp_path / "artifacts", 10**9),
        ports=FirstPortTaken(int(taken)),
        settings=settings,
    )
    container = echo_container("mine")
    spec = EndpointSpec(
        endpoint_name="shared",
        endpoint_arn="arn:aws:sagemaker:us-east-1:123456789012:endpoint/shared",
        endpoint_config_name="shared",
        variants=(
            VariantSpec(
                variant_name="AllTraffic",
                model_name="shared",
                containers=(ContainerSpec("mine", ECHO_IMAGE, None, container["Environment"]),),
                mode="Serial",
            ),
        ),
        revision=1,
    )

    async def scenario() -> None:
        group = RunningGroup(spec)
        await starter.start(spec, group)
        try:
            (running,) = group.containers
            assert running.launch.port != taken  # started again on a fresh port
            pool = UpstreamPool("127.0.0.1", running.launch.port, 4)
            answer = await pool.post(b"/invocations", [], b"x", 5, 1000)
            assert answer.body == b"mine:x"
            pool.close()
        finally:
            await starter.stop(group)

    try:
        asyncio.run(scenario())
    finally:
        stranger.shutdown()


# -- a failing health check is not a collision ---------------------------------------------------
SILENT_IMAGE = "polyhost-test/silent:1"  # runs, never binds its port


class CountingBackend:
    """The real process backend, counting the starts it is asked for."""

    def __init__(self, backend: ProcessBackend) -> None:
        self.backend = backend
        self.launches: list[LaunchSpec] = []

    def knows_image(self, image: str) -> bool:
        return self.backend.knows_image(image)

    def image_limits(self, image: str) -> ResourceLimits:
        return self.backend.image_limits(image)

    def known_images(self) -> list[str]:
        return self.backend.known_images()

    async def start(self, spec: LaunchSpec) -> ContainerHandle:
        self.launches.append(spec)
        return await self.backend.start(spec)


@pytest.fixture
def strangers() -> Iterator[list[HTTPServer]]:
    servers: list[HTTPServer] = []
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def stranger_port(strangers: list[HTTPServer]) -> int:
    server = HTTPServer(("127.0.0.1", 0), Stranger)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    strangers.append(server)
    return int(server.server_address[1])


class TakenPorts(PortAllocator):
    """Every port it hands out is already someone else's."""

    def __init__(self, strangers: list[HTTPServer]) -> None:
        super().__init__()
        self._strangers = strangers

    def allocate(self) -> tuple[int, tuple[int, int]]:
        port = stranger_port(self._strangers)
        return port, (port + 1, port + 9)


def one_container(image: str, environment: dict[str, str]) -> EndpointSpec:
    return EndpointSpec(
        endpoint_name="ep",
        endpoint_arn="arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep",
        endpoint_config_name="ep",
        variants=(
            VariantSpec(
                variant_name="AllTraffic",
                model_name="m",
                containers=(ContainerSpec("c", image, None, environment),),
                mode="Serial",
            ),
        ),
        revision=1,
    )


def starter_for(
    tmp_path: Path, timeout_s: float, ports: PortAllocator | None = None
) -> tuple[GroupStarter, CountingBackend]:
    settings = Settings(
        state_dir=tmp_path / "state", stop_grace_s=1, default_startup_timeout_s=timeout_s
    )
    config = write_image_config(tmp_path / "images.toml")
    with open(config, "a", encoding="utf-8") as extra:
        extra.write(
            f'[images."{SILENT_IMAGE}"]\ncommand = ["{sys.executable}", "-c", '
            '"import time; time.sleep(600)"]\n'
        )
    backend = CountingBackend(ProcessBackend(settings, ImageRegistry.load(config), cgroups=False))
    starter = GroupStarter(
        backend=backend,
        artifacts=ArtifactStore(tmp_path / "artifacts", 10**9),
        ports=ports or PortAllocator(),
        settings=settings,
    )
    return starter, backend


def start_failure(starter: GroupStarter, spec: EndpointSpec) -> str:
    async def scenario() -> str:
        group = RunningGroup(spec)
        try:
            await starter.start(spec, group)
        except DeployFailure as failure:
            assert all(
                c.handle is None or c.handle.exit_code() is not None for c in group.containers
            )
            return failure.reason
        raise AssertionError("the group started")

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    ("image", "environment"),
    [(FAULTY_IMAGE, {"FAULT": "never-ping"}), (SILENT_IMAGE, {})],
    ids=["listens-and-fails-ping", "never-binds"],
)
def test_a_container_that_never_passes_ping_is_started_once(
    tmp_path: Path, image: str, environment: dict[str, str]
) -> None:
    starter, backend = starter_for(tmp_path, timeout_s=1.5)
    reason = start_failure(starter, one_container(image, environment))
    assert reason.startswith(
        "Container c for production variant AllTraffic did not pass the ping health check "
        "within 1.5 seconds."
    )
    # One start: its port is its own (or nobody's), so nothing would be gained on another.
    assert [spec.port for spec in backend.launches] == [backend.launches[0].port]


def test_ports_all_taken_by_strangers_are_tried_a_bounded_number_of_times(
    tmp_path: Path, strangers: list[HTTPServer]
) -> None:
    starter, backend = starter_for(tmp_path, timeout_s=60, ports=TakenPorts(strangers))
    reason = start_failure(starter, one_container(ECHO_IMAGE, {"ECHO_NAME": "c"}))
    ports = [spec.port for spec in backend.launches]
    assert len(ports) == 3 and len(set(ports)) == 3
    assert reason.startswith("Container c for production variant AllTraffic could not ")
    assert f"Ports {', '.join(map(str, ports))} were all taken by other processes" in reason
