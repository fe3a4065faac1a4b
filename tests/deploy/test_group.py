"""Starting a container group when its port is taken by a stranger (a machine shared by servers).

A port is only known free when it is handed out; another process may bind it before the
container does. The group must never take that stranger's `/ping` for the container's, and
must start the container again on a fresh port.
"""

from __future__ import annotations

import asyncio
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from polyhost.backends.images import ImageRegistry
from polyhost.backends.process import ProcessBackend
from polyhost.control.seam import ContainerSpec, EndpointSpec, VariantSpec
from polyhost.deploy.artifacts import ArtifactStore
from polyhost.deploy.group import GroupStarter, RunningGroup
from polyhost.deploy.ports import PortAllocator
from polyhost.router.upstream import UpstreamPool
from polyhost.settings import Settings
from tests.support.endpoints import echo_container
from tests.support.server import ECHO_IMAGE, write_image_config


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
