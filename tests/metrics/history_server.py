"""`python -m tests.metrics.history_server serve ...`: polyhost with the metric history wired.

Until the composition root (`polyhost/server.py`) records metric history and routes
CloudWatch's API itself, the end-to-end tests start the server through this launcher: the same
`polyhost serve` command, with the recorder started beside the deployer (and stopped before
it, so the last interval is written) and the CloudWatch requests routed to their adapter.
Once server.py does it, this launcher adds nothing and runs the server as is.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

import polyhost.server as server_module
from polyhost.http.services.cloudwatch import ROUTE_PREFIX, CloudWatchRoute, wants_cloudwatch
from polyhost.http.types import ASGIApp, Receive, Scope, Send
from polyhost.metrics.cloudwatch_api import CloudWatchApi
from polyhost.metrics.history import MetricsHistory
from polyhost.metrics.recorder import MetricsRecorder
from polyhost.settings import Settings
from tests.support.server import REGION, PolyhostProcess, free_port, write_image_config

ROOT = Path(__file__).resolve().parents[2]  # the checkout: `-m tests...` must find `tests`


class _WithCloudWatch:
    """The app, with CloudWatch's requests (POST / by target or form, and the CBOR paths)
    sent to its route first."""

    def __init__(self, app: ASGIApp, route: CloudWatchRoute) -> None:
        self._app = app
        self._route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            scope["path"].startswith(ROUTE_PREFIX + "/")
            or (scope["path"] == "/" and scope["method"] == "POST" and wants_cloudwatch(scope))
        ):
            await self._route(scope, receive, send)
            return
        await self._app(scope, receive, send)


class ServerWithHistory(server_module.PolyhostServer):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.wired_here = not hasattr(self, "history")
        if not self.wired_here:
            return
        self.history = MetricsHistory.open(settings.state_dir)
        self.recorder = MetricsRecorder(self.history, self.deployer.container_samples)
        self.app = _WithCloudWatch(self.app, CloudWatchRoute(CloudWatchApi(self.history)))  # type: ignore[assignment]
        shutdown = self.deployer.shutdown

        async def stop_recorder_then_deployer() -> None:
            await self.recorder.stop()
            await shutdown()

        self.deployer.shutdown = stop_recorder_then_deployer  # type: ignore[method-assign]

    async def serve(self) -> None:
        if self.wired_here:
            self.recorder.start(asyncio.get_running_loop())
        try:
            await super().serve()
        finally:
            if self.wired_here:
                self.history.close()


def main(argv: list[str] | None = None) -> Any:
    server_module.PolyhostServer = ServerWithHistory  # type: ignore[misc]
    from polyhost.cli import main as cli_main

    return cli_main(argv)


# -- for the tests: a server process started through this launcher, and CloudWatch clients ------
BUSY_IMAGE = "polyhost-test/busy:1"


def write_images(path: Path) -> Path:
    """The test images (echo) plus the busy container, in one images.toml."""
    write_image_config(path)
    busy = Path(__file__).parent / "busy_container.py"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(f'[images."{BUSY_IMAGE}"]\ncommand = ["{sys.executable}", "{busy}"]\n')
    return path


@dataclass
class HistoryServerProcess(PolyhostProcess):
    """`PolyhostProcess`, started with `python -m tests.metrics.history_server serve`."""

    def start(self, timeout: float = 30.0) -> HistoryServerProcess:
        self.port = self.port or free_port()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.state_dir / f"server-{int(time.time() * 1000)}.log"
        args = [
            sys.executable, "-m", "tests.metrics.history_server", "serve",
            "--port", str(self.port), "--state-dir", str(self.state_dir), "--stop-grace", "3",
        ]  # fmt: skip
        if self.image_config is not None:
            args += ["--image-config", str(self.image_config)]
        args += self.extra_args
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                cwd=ROOT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"polyhost exited at start:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"polyhost did not come up in {timeout}s:\n{self.log()}")

    def cloudwatch(self, protocol: str | None = None, models: Path | None = None) -> Any:
        """A boto3 CloudWatch client; with `protocol`, one made to speak only that protocol
        (botocore's own serializer and parser for it, from a copy of its model)."""
        config = Config(retries={"max_attempts": 1})
        if protocol is None:
            return boto3.client(
                "cloudwatch", endpoint_url=self.url, region_name=REGION, config=config
            )
        assert models is not None
        session = botocore.session.get_session()
        model = copy.deepcopy(session.get_service_data("cloudwatch"))
        model["metadata"]["protocol"] = protocol
        model["metadata"]["protocols"] = [protocol]
        folder = models / protocol
        version_dir = folder / "cloudwatch" / model["metadata"]["apiVersion"]
        version_dir.mkdir(parents=True, exist_ok=True)
        (version_dir / "service-2.json").write_text(json.dumps(model), encoding="utf-8")
        own = botocore.session.get_session()
        own.get_component("data_loader").search_paths.insert(0, str(folder))
        client = boto3.Session(botocore_session=own).client(
            "cloudwatch", endpoint_url=self.url, region_name=REGION, config=config
        )
        assert client.meta.service_model.resolved_protocol == protocol
        return client


if __name__ == "__main__":
    sys.exit(main())
