"""Composition root: builds the server's parts from `Settings` and runs them on one port.

Order matters: the store opens first, the deployer then brings back every endpoint that should
run (reconcile), and only then does the port accept requests. On SIGINT/SIGTERM uvicorn stops
accepting, and the deployer stops every container before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import time

import uvicorn

from polyhost.backends.images import ImageRegistry
from polyhost.control.seam import NullDeployer
from polyhost.control.service import ControlPlane
from polyhost.http.app import PolyhostApp
from polyhost.http.awsjson import AwsJsonAdapter
from polyhost.settings import Settings

log = logging.getLogger("polyhost.server")


class PolyhostServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.images = ImageRegistry.load(settings.image_config)
        # TEMPORARY until the deployer lands (issue 3): endpoints stay Creating.
        self.deployer = NullDeployer()
        self.control = ControlPlane(settings, self.deployer, self.images)
        self.app = PolyhostApp(
            AwsJsonAdapter(self.control.call),
            access_log_enabled=settings.access_log,
        )

    async def serve(self) -> None:
        started = time.perf_counter()
        for spec in self.control.desired_endpoints():
            self.deployer.apply(spec)
        config = uvicorn.Config(
            self.app,
            host=self.settings.host,
            port=self.settings.port,
            loop="none",
            http="httptools",
            lifespan="off",
            access_log=False,
            log_config=None,
            timeout_keep_alive=75,
            backlog=4096,
        )
        server = uvicorn.Server(config)
        server_task = asyncio.create_task(server.serve())
        while not server.started and not server_task.done():
            await asyncio.sleep(0.005)
        if server.started:
            log.info(
                "polyhost listening on http://%s:%d (state %s, ready in %.0f ms)",
                self.settings.host,
                self.settings.port,
                self.settings.state_dir,
                (time.perf_counter() - started) * 1000,
            )
        try:
            await server_task
        finally:
            self.control.close()
            log.info("polyhost stopped")


def run(settings: Settings) -> None:
    """Run the server until SIGINT/SIGTERM, on uvloop when it is installed."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        runner = asyncio.run
    runner(PolyhostServer(settings).serve())
