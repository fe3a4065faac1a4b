"""A backend whose containers are tiny HTTP responders inside the test's own event loop.

The deployer and the supervisor only see `Backend` and `ContainerHandle` (backends/base.py), and
judge health by a real `GET /ping` (deploy/health.py). So each fake container really listens on
the loopback port the deployer gave it and answers `/ping` and `/invocations` over HTTP, while
everything a process would do on its own is under the test's control: exit at start with a
code, stay unhealthy until told otherwise, crash later, hold its start until a gate opens, or
fail to launch at all. Invocations answer `<container_id>:<body>`, so a test can tell which
revision, replica and container served a request (pipelines nest: "ep.r1...b:ep.r1...a:x").

Behaviour comes from the container's Environment (as a real test image would read it), or from
`FakeBackend.plan(hostname, Start(...))` for the next starts of a hostname (restarts included):

    FAKE_EXIT_AT_START=<code>  write FAKE_LOG to the log, then exit with <code> before serving
    FAKE_UNHEALTHY=1           listens, but /ping answers 503 until `set_healthy(True)`
    FAKE_NO_LISTEN=1           runs but never binds its port (say, loading a model forever)
    FAKE_LOG=<text>            written to the container's log file at start

Also here, for the deploy tests: `RecordingSink` (a StatusSink that keeps every report),
`eventually` (wait for an event, with a generous bound that is never asserted on), spec
builders, and `deploy_harness` (settings + router + deployer + backend, torn down after).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyhost.backends.base import (
    ContainerStartError,
    ContainerStats,
    LaunchSpec,
    ResourceLimits,
)
from polyhost.control.seam import (
    ContainerSpec,
    EndpointSpec,
    InferenceMode,
    StatusReport,
    VariantSpec,
)
from polyhost.deploy.deployer import EndpointDeployer
from polyhost.router.router import InvokeRequest, Router
from polyhost.settings import Settings
from tests.support.waiting import eventually_async as eventually

IMAGE = "fake:latest"
SIGTERM_EXIT = -15


@dataclass
class Start:
    """How one start of a container goes (overrides what its Environment says)."""

    exit_code: int | None = None  # exit at once with this code, never serving
    healthy: bool = True  # what /ping answers until `set_healthy`
    listen: bool = True  # False: runs without ever binding its port
    log: str = ""  # written to the log at start
    gate: asyncio.Event | None = None  # `Backend.start` waits for it before launching
    error: str | None = None  # `Backend.start` raises ContainerStartError(error)

    @classmethod
    def from_environment(cls, environment: dict[str, str]) -> Start:
        code = environment.get("FAKE_EXIT_AT_START")
        return cls(
            exit_code=int(code) if code is not None else None,
            healthy=not environment.get("FAKE_UNHEALTHY"),
            listen=not environment.get("FAKE_NO_LISTEN"),
            log=environment.get("FAKE_LOG", ""),
        )


class FakeContainer:
    """A started fake container; implements `ContainerHandle`."""

    def __init__(self, launch: LaunchSpec, healthy: bool) -> None:
        self.launch = launch
        self.healthy = healthy
        self.pings = 0
        self.bodies: list[bytes] = []  # every invocation body received
        self.stop_calls: list[float] = []  # grace_s of each stop()
        self._exit_code: int | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- ContainerHandle ----------------------------------------------------------------------
    @property
    def container_id(self) -> str:
        return self.launch.container_id

    @property
    def host(self) -> str:
        return self.launch.host

    @property
    def port(self) -> int:
        return self.launch.port

    @property
    def limits_applied(self) -> str:
        return "none (fake container)"

    def exit_code(self) -> int | None:
        return self._exit_code

    async def stop(self, grace_s: float) -> None:
        self.stop_calls.append(grace_s)
        if self._exit_code is None:
            await self._exit(SIGTERM_EXIT)

    def stats(self) -> ContainerStats | None:
        if self._exit_code is not None:
            return None
        return ContainerStats(cpu_percent=12.5, rss_bytes=1 << 20, memory_percent=0.5)

    def listens_on(self, port: int) -> bool | None:
        return self._exit_code is None and self._server is not None and port == self.port

    # -- what the test controls ---------------------------------------------------------------
    @property
    def hostname(self) -> str:
        return self.launch.container_id.rsplit(".", 1)[-1]

    @property
    def running(self) -> bool:
        return self._exit_code is None

    def set_healthy(self, healthy: bool) -> None:
        self.healthy = healthy

    async def crash(self, code: int) -> None:
        """The process dies on its own: it stops listening and reports `code`."""
        self._write_log(f"fake: crashed with code {code}")
        await self._exit(code)

    # -- the process's own life ----------------------------------------------------------------
    async def boot(self, plan: Start) -> None:
        if plan.log:
            self._write_log(plan.log)
        if plan.exit_code is not None:
            self._exit_code = plan.exit_code
            return
        if not plan.listen:
            return
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
        except OSError as error:  # the port was taken: a real server would fail to bind
            self._write_log(f"fake: cannot bind {self.host}:{self.port}: {error.strerror}")
            self._exit_code = 98

    async def _exit(self, code: int) -> None:
        self._exit_code = code
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.close()
        if server is not None:
            await server.wait_closed()

    def _write_log(self, line: str) -> None:
        self.launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.launch.log_path, "a", encoding="utf-8") as log:
            log.write(line + "\n")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 with keep-alive, enough for `ping()` and `UpstreamPool`."""
        self._writers.add(writer)
        try:
            while self._exit_code is None:
                request_line = await reader.readline()
                if not request_line:
                    break
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, content_type, payload = self._respond(method, path, headers, body)
                writer.write(
                    b"HTTP/1.1 %d Fake\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                    % (status, content_type.encode("latin-1"), len(payload))
                    + payload
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _respond(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, bytes]:
        if method == "GET" and path == "/ping":
            self.pings += 1
            return (200, "text/plain", b"") if self.healthy else (503, "text/plain", b"")
        if method == "POST" and path == "/invocations":
            self.bodies.append(body)
            content_type = headers.get("content-type", "application/octet-stream")
            return 200, content_type, self.container_id.encode() + b":" + body
        return 404, "text/plain", b"not found"


class FakeBackend:
    """Implements `Backend`; keeps every container it started, in start order."""

    def __init__(self, images: tuple[str, ...] = (IMAGE,)) -> None:
        self.images = images
        self.started: list[FakeContainer] = []
        self.starting = 0  # starts waiting on a gate now
        self._plans: defaultdict[str, deque[Start]] = defaultdict(deque)

    def plan(self, hostname: str, *starts: Start) -> None:
        """How the next starts of `hostname` go, in order; then its Environment decides."""
        self._plans[hostname].extend(starts)

    # -- Backend --------------------------------------------------------------------------------
    def knows_image(self, image: str) -> bool:
        return image in self.images

    def image_limits(self, image: str) -> ResourceLimits:
        return ResourceLimits()

    def known_images(self) -> list[str]:
        return list(self.images)

    async def start(self, spec: LaunchSpec) -> FakeContainer:
        hostname = spec.container_id.rsplit(".", 1)[-1]
        planned = self._plans[hostname]
        plan = planned.popleft() if planned else Start.from_environment(dict(spec.environment))
        if plan.gate is not None:
            self.starting += 1
            try:
                await plan.gate.wait()
            finally:
                self.starting -= 1
        if plan.error is not None:
            raise ContainerStartError(plan.error)
        container = FakeContainer(spec, plan.healthy)
        self.started.append(container)
        await container.boot(plan)
        return container

    # -- what the test looks at -----------------------------------------------------------------
    def containers(
        self, hostname: str | None = None, revision: int | None = None
    ) -> list[FakeContainer]:
        """Started containers, oldest first, optionally of one hostname and one revision."""
        return [
            c
            for c in self.started
            if (hostname is None or c.hostname == hostname)
            and (revision is None or f".r{revision}." in c.container_id)
        ]

    def running(
        self, hostname: str | None = None, revision: int | None = None
    ) -> list[FakeContainer]:
        return [c for c in self.containers(hostname, revision) if c.running]

    async def close(self) -> None:
        """Stop whatever is still running (whatever the test or the code under test left)."""
        for container in self.started:
            if container.running:
                await container.stop(0)


class RecordingSink:
    """A StatusSink that keeps every report; the deployer calls it from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reports: list[StatusReport] = []
        # Seconds each report call lasts after recording (a slow control plane): the caller
        # sees the report while the deployer still waits for the call to return.
        self.linger_s = 0.0

    def report(self, report: StatusReport) -> None:
        with self._lock:
            self._reports.append(report)
        if self.linger_s:
            time.sleep(self.linger_s)

    @property
    def reports(self) -> list[StatusReport]:
        with self._lock:
            return list(self._reports)

    def of(self, endpoint: str, revision: int | None = None) -> list[StatusReport]:
        return [
            r
            for r in self.reports
            if r.endpoint_name == endpoint and (revision is None or r.revision == revision)
        ]


# -- specs -------------------------------------------------------------------------------------
def container(hostname: str, **environment: str) -> ContainerSpec:
    return ContainerSpec(hostname=hostname, image=IMAGE, environment=dict(environment))


def variant(
    *containers: ContainerSpec,
    name: str = "AllTraffic",
    mode: InferenceMode = "Serial",
    instance_count: int = 1,
    weight: float = 1.0,
    startup_timeout_s: int | None = None,
) -> VariantSpec:
    return VariantSpec(
        variant_name=name,
        model_name=f"{name}-model",
        containers=containers,
        mode=mode,
        instance_count=instance_count,
        initial_weight=weight,
        startup_timeout_s=startup_timeout_s,
    )


def endpoint(name: str, *variants: VariantSpec, revision: int = 1) -> EndpointSpec:
    """Revision N is served by endpoint config `<name>-cfg-N`."""
    return EndpointSpec(
        endpoint_name=name,
        endpoint_arn=f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{name}",
        endpoint_config_name=f"{name}-cfg-{revision}",
        variants=variants,
        revision=revision,
    )


# -- the deployer with everything around it -----------------------------------------------
@dataclass
class DeployHarness:
    settings: Settings
    backend: FakeBackend
    router: Router
    deployer: EndpointDeployer
    sink: RecordingSink

    async def report(self, endpoint: str, revision: int) -> StatusReport:
        """The first report of this revision, once there is one."""
        reports: list[StatusReport] = await eventually(
            lambda: self.sink.of(endpoint, revision), f"a report of {endpoint} r{revision}"
        )
        return reports[0]

    async def invoke(self, endpoint: str, body: bytes = b"x", **request: Any) -> bytes:
        """The body the endpoint answers (errors propagate as the router raises them)."""
        result = await self.router.invoke(endpoint, InvokeRequest(body, **request))
        return result.body


@contextlib.asynccontextmanager
async def deploy_harness(state_dir: Path, **settings: Any) -> AsyncIterator[DeployHarness]:
    """A started deployer over a fake backend; every container is stopped afterwards."""
    defaults: dict[str, Any] = {
        "stop_grace_s": 1.0,
        "invocation_timeout_s": 5.0,
        # Long enough never to expire on a loaded machine; tests that want the timeout set it
        # per variant (ContainerStartupHealthCheckTimeoutInSeconds).
        "default_startup_timeout_s": 30.0,
    }
    config = Settings(state_dir=state_dir, **{**defaults, **settings})
    backend = FakeBackend()
    router = Router(config)
    deployer = EndpointDeployer(config, backend, router)
    sink = RecordingSink()
    deployer.bind_status_sink(sink)
    deployer.start(asyncio.get_running_loop())
    try:
        yield DeployHarness(config, backend, router, deployer, sink)
    finally:
        await deployer.shutdown()
        await backend.close()
