"""Composition root: builds the server's parts from `Settings` and runs them on one port.

Order matters: the store opens first; containers a killed predecessor left behind are reaped;
the port starts accepting; then every endpoint that should run is brought back (reconcile) in
the background — until its containers are healthy, its invocations get a retryable 503. On
SIGINT/SIGTERM uvicorn stops accepting, and the deployer stops every container before exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Generator

import uvicorn

from polyhost.backends.images import ImageRegistry
from polyhost.backends.process import ProcessBackend
from polyhost.control.service import ControlPlane
from polyhost.deploy.deployer import EndpointDeployer
from polyhost.http.app import ExtraRoute, PolyhostApp
from polyhost.http.awsjson import AwsJsonAdapter
from polyhost.http.logs import LogsRoute
from polyhost.http.runtime import RuntimeAdapter
from polyhost.metrics.exposition import MetricsRoute
from polyhost.router.router import Router
from polyhost.settings import Settings

log = logging.getLogger("polyhost.server")


class _UvicornServer(uvicorn.Server):
    """uvicorn's server without its own signal handling.

    uvicorn re-raises a captured SIGTERM/SIGINT when `serve()` returns, which would kill the
    process before the deployer stops the containers. polyhost installs its own handlers.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class PolyhostServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.images = ImageRegistry.load(settings.image_config)
        self.backend = ProcessBackend(settings, self.images)
        self.router = Router(settings)
        self.deployer = EndpointDeployer(settings, self.backend, self.router)
        self.control = ControlPlane(settings, self.deployer, self.images)
        self.deployer.bind_status_sink(self.control)
        routes: dict[str, ExtraRoute] = {
            "/metrics": MetricsRoute(self.deployer.groups),
            "/polyhost/endpoints": LogsRoute(self.deployer.log_streams),
        }
        self.app = PolyhostApp(
            AwsJsonAdapter(self.control.call),
            runtime=RuntimeAdapter(self.router, settings.max_body_bytes).handle,
            routes=routes,
            access_log_enabled=settings.access_log,
        )

    async def serve(self) -> None:
        started = time.perf_counter()
        self.deployer.start(asyncio.get_running_loop())
        await self.backend.reap_orphans(self.settings.stop_grace_s)
        desired = self.control.desired_endpoints()
        for spec in desired:
            self.router.mark_restoring(spec.endpoint_name)
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
        server = _UvicornServer(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._request_exit, server)
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
            for spec in desired:
                self.deployer.apply(spec)
        try:
            await server_task
        finally:
            await self.deployer.shutdown()
            self.control.close()
            log.info("polyhost stopped")

    @staticmethod
    def _request_exit(server: uvicorn.Server) -> None:
        if server.should_exit:
            server.force_exit = True  # a second signal: stop waiting for open connections
        server.should_exit = True


def run(settings: Settings) -> None:
    """Run the server until SIGINT/SIGTERM, on uvloop when it is installed."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        runner = asyncio.run
    runner(PolyhostServer(settings).serve())
