"""Composition root: builds the server's parts from `Settings` and runs them on one port,
plus the admin listener's (/metrics and the dashboard's API) unless --admin-port is 0.

Order matters: the store opens first; containers a killed predecessor left behind are reaped
(a backend that adopts them instead, Ray, stops only what no endpoint claimed once the
reconcile settled); the port starts accepting; then every endpoint that should run is brought
back (reconcile) in the background — until its containers are healthy, its invocations get a
retryable 503. On SIGINT/SIGTERM the server stops accepting, finishes what is in flight, and
the deployer stops every container before exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from polyhost.asyncinf.queue import AsyncQueue
from polyhost.asyncinf.worker import AsyncWorker
from polyhost.auth.gate import Gate, load_access_control
from polyhost.autoscaling.service import AutoscalingService
from polyhost.autoscaling.store import AutoscalingStore
from polyhost.backends.confinement import plan as plan_confinement
from polyhost.backends.confinement import protect_files
from polyhost.backends.factory import make_backend
from polyhost.backends.registry import ImageRegistry
from polyhost.backends.role_credentials import load_role_credentials
from polyhost.capture.service import DataCapture
from polyhost.control.service import ControlPlane
from polyhost.deploy.deployer import EndpointDeployer
from polyhost.http.admin.api import AdminApi
from polyhost.http.admin.hosting import HostingView
from polyhost.http.admin.listener import ADMIN_MAX_CONNECTIONS, AdminApp, no_invocations
from polyhost.http.admin.metrics import MetricsRoute
from polyhost.http.admin.token import BearerCheck, generated_token_file, load_admin_token
from polyhost.http.app import ExtraRoute, PolyhostApp, TargetHandler
from polyhost.http.auth import AuthMiddleware
from polyhost.http.aws.cloudwatch_model import TARGET_PREFIX as CLOUDWATCH_TARGET
from polyhost.http.aws.json_protocol import AwsJsonAdapter
from polyhost.http.protocol import (
    HttpProtocol,
    ServerState,
    shutdown_connections,
    sweep_idle_connections,
)
from polyhost.http.services.async_runtime import AsyncInvocationsRoute
from polyhost.http.services.autoscaling import AUTOSCALING_TARGET, autoscaling_adapter
from polyhost.http.services.cloudwatch import ROUTE_PREFIX as CLOUDWATCH_ROUTE_PREFIX
from polyhost.http.services.cloudwatch import CloudWatchRoute, cloudwatch_error
from polyhost.http.services.cloudwatch_logs import LOGS_TARGET, cloudwatch_logs_adapter
from polyhost.http.services.container_logs import LogsRoute
from polyhost.http.services.runtime import RuntimeAdapter
from polyhost.http.services.streaming import StreamingAdapter
from polyhost.http.types import Receive, Scope, Send
from polyhost.logs.api import LogsApi
from polyhost.logs.retained import RetainedLogs
from polyhost.metrics.alarm_store import AlarmStore
from polyhost.metrics.alarms import AlarmService
from polyhost.metrics.cloudwatch_api import CloudWatchApi
from polyhost.metrics.collection import container_registry
from polyhost.metrics.history import MetricsHistory
from polyhost.metrics.recorder import MetricsRecorder
from polyhost.router.router import Router
from polyhost.router.streaming import StreamRouter
from polyhost.settings import Settings

log = logging.getLogger("polyhost.server")


def _named(operation: str, route: ExtraRoute) -> TargetHandler:
    """An ASGI route as a `POST /` target handler, named for the access log."""

    async def handler(scope: Scope, receive: Receive, send: Send) -> tuple[str, int]:
        return operation, await route(scope, receive, send)

    return handler


class PolyhostServer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        # What keeps tenants' containers apart (networks, users); raises ConfinementError when
        # the server must not start (auth on a machine that cannot isolate, without
        # --no-isolate). Files are closed to container users before anything is written.
        self.confinement = plan_confinement(settings)
        if self.confinement.users is not None:
            protect_files(settings, settings.admin_token_file)
        # With auth, the admin listener always wants a token: the operator's, or one made here.
        self.admin_token_file = settings.admin_token_file
        self.admin_token_generated = False
        if self.admin_token_file is None and settings.auth_file is not None and settings.admin_port:
            self.admin_token_file = generated_token_file(settings.state_dir)
            self.admin_token_generated = True
        self.images = ImageRegistry.load(settings.image_config)
        self.backend = make_backend(settings, self.images)
        self.router = Router(settings)
        self.deployer = EndpointDeployer(
            settings, self.backend, self.router, confinement=self.confinement
        )
        self.control = ControlPlane(settings, self.deployer, self.images)
        self.deployer.bind_status_sink(self.control)
        # Per-container history (10 s in memory, 1-minute roll-ups in the state dir), read by
        # CloudWatch's API and the admin listener's dashboard API.
        self.history: MetricsHistory | None = None
        self.recorder: MetricsRecorder | None = None
        if settings.metrics_history:
            self.history = MetricsHistory.open(
                settings.state_dir,
                max_series=settings.metrics_max_series,
                retention_s=settings.metrics_retention_days * 86_400,
            )
        # InvokeEndpointAsync's requests wait in the state dir until the worker runs them, which
        # reaches S3 and SNS as each model's role (the credentials its containers get).
        roles = load_role_credentials(settings.role_credentials)
        self.async_queue = AsyncQueue(settings.state_dir / "async.db", settings.async_max_queued)
        self.async_worker = AsyncWorker(
            self.async_queue,
            self.router,
            settings,
            serving=lambda: [group.spec for group in self.deployer.groups()],
            role_credentials=roles,
        )
        # DataCaptureConfig: the runtime adapter queues sampled invocations of the revision
        # that serves, and a process of its own writes them to S3 as each variant's model role.
        self.capture = DataCapture(settings)
        self.deployer.watch_serving(self.capture.serving_changed)
        self.router.shadows.capture = self.capture  # shadow variants' copies too
        if self.history is not None:
            self.recorder = MetricsRecorder(
                self.history,
                self.deployer.container_samples,
                backlog=self.async_worker.backlog,
                async_series=self.async_worker.series,
                no_capacity=self.router.no_capacity_failures,
            )
        routes: dict[str, ExtraRoute] = {
            "/polyhost/endpoints": LogsRoute(self.deployer.log_streams),
            # Every `/endpoints/...` route but InvokeEndpoint's (the protocol's own) and the
            # stream's: POST /endpoints/{name}/async-invocations, 404 for the rest.
            "/endpoints": AsyncInvocationsRoute(
                self.async_queue, self.router, settings, self.async_worker.notify
            ),
        }
        targets: dict[str, TargetHandler] = {
            LOGS_TARGET: cloudwatch_logs_adapter(
                LogsApi(settings.region, settings.account_id),
                RetainedLogs(settings.containers_dir, self.deployer.all_log_streams),
            ),
        }
        untargeted: TargetHandler | None = None
        # CloudWatch alarms (alarms.db in the state dir), evaluated on the metric history.
        self.alarm_store: AlarmStore | None = None
        self.alarms: AlarmService | None = None
        if self.history is not None:
            self.alarm_store = AlarmStore.open(settings.state_dir)
            self.alarms = AlarmService(
                self.alarm_store,
                self.history,
                region=settings.region,
                account_id=settings.account_id,
                interval_s=settings.alarm_evaluation_interval_s,
                time_scale=settings.autoscaling_time_scale,
            )
            # Deployment guardrails: UpdateEndpoint checks its rollback alarms exist, and the
            # deployer watches them during the deployment.
            self.control.bind_alarms(self.alarms.alarm_state)
            self.deployer.bind_alarms(self.alarms.alarm_state)
            cloudwatch = CloudWatchRoute(CloudWatchApi(self.history, alarms=self.alarms))
            routes[CLOUDWATCH_ROUTE_PREFIX] = cloudwatch  # rpc-v2-cbor: /service/.../operation/Op
            targets[CLOUDWATCH_TARGET] = untargeted = _named("CloudWatch", cloudwatch)
        # Application Auto Scaling (autoscaling.db): acts on capacity through the control
        # plane's operations, fired by the alarms above and by its own scheduled actions.
        self.autoscaling_store = AutoscalingStore.open(settings.state_dir)
        self.autoscaling = AutoscalingService(
            self.autoscaling_store,
            self.control.call,
            self.alarms,
            region=settings.region,
            account_id=settings.account_id,
            time_scale=settings.autoscaling_time_scale,
        )
        targets[AUTOSCALING_TARGET] = autoscaling_adapter(self.autoscaling)
        # Raises PolicyError/OSError for a bad --auth-file: the server does not start.
        self.gate = Gate(settings, load_access_control(settings))
        self.runtime = RuntimeAdapter(
            self.router, settings.max_body_bytes, self.gate, capture=self.capture
        )
        self.streaming = StreamingAdapter(
            StreamRouter(self.router, settings), settings, self.gate, routes=self.router.route
        )
        self.app = AuthMiddleware(
            PolyhostApp(
                AwsJsonAdapter.sagemaker(self.control.call, settings.max_control_body_bytes),
                runtime=self.runtime.handle,
                routes=routes,
                access_log_enabled=settings.access_log,
                targets=targets,
                untargeted=untargeted,
            ),
            self.gate,
            settings,
            encoders={
                "cloudwatch-json": cloudwatch_error,
                "cloudwatch-cbor": cloudwatch_error,
                "cloudwatch-query": cloudwatch_error,
            },
        )

    async def serve(self) -> None:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        self.deployer.start(loop)
        self.capture.start()
        if self.recorder is not None:
            self.recorder.start(loop)
        alarms = None if self.alarms is None else loop.create_task(self.alarms.run())
        autoscaling = loop.create_task(self.autoscaling.run())
        self.confinement.tell()
        await self.backend.reap_orphans(self.settings.stop_grace_s)
        desired = self.control.desired_endpoints()
        for spec in desired:
            self.router.mark_restoring(spec.endpoint_name)
        # One access-log line per request: the fast invocation path logs in the protocol, the
        # ASGI routes in PolyhostApp (which knows the control operation's name).
        admin = await self._open_admin(loop)
        state = ServerState(self.settings)
        server = await loop.create_server(
            lambda: HttpProtocol(self.runtime.answer, self.app, state, self.streaming.serve),
            host=self.settings.host,
            port=self.settings.port,
            backlog=4096,
            reuse_address=True,
        )
        sweeper = loop.create_task(
            sweep_idle_connections(state, every_s=min(5.0, self.settings.keep_alive_timeout_s / 2))
        )
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.gate.reload)
        log.info(
            "polyhost listening on http://%s:%d (state %s, %s, ready in %.0f ms)",
            self.settings.host,
            self.settings.port,
            self.settings.state_dir,
            "requests must be signed" if self.gate.enabled else "no authentication",
            (time.perf_counter() - started) * 1000,
        )
        for spec in desired:
            self.deployer.apply(spec)
        self.async_worker.start(loop)
        # A backend that adopts what its predecessor left (Ray) stops the rest once the
        # endpoints that should run are back; for the others this does nothing.
        leftovers = loop.create_task(
            self.deployer.release_unclaimed([spec.endpoint_name for spec in desired])
        )
        try:
            await stop.wait()
            log.info("stopping: no new connections; finishing requests in flight")
            server.close()
            sweeper.cancel()
            if admin is not None:
                admin[0].close()
                admin[2].cancel()
            await shutdown_connections(state, timeout_s=5.0)
            if admin is not None:
                await shutdown_connections(admin[1], timeout_s=1.0)
        finally:
            leftovers.cancel()
            # Every answered invocation is in the buffer now: written before exit.
            await asyncio.to_thread(self.capture.stop)
            if alarms is not None:
                alarms.cancel()
            autoscaling.cancel()
            await asyncio.to_thread(self.autoscaling.close)  # waits for a tick under way
            # Requests cut short stay in the queue and run at the next start.
            await self.async_worker.stop()
            self.async_queue.close()
            if self.recorder is not None:
                await self.recorder.stop()  # the last interval is recorded before containers go
            await self.deployer.shutdown()
            self.control.close()
            self.autoscaling_store.close()
            if self.alarms is not None and self.alarm_store is not None:
                await asyncio.to_thread(self.alarms.close)  # sends what is under way
                self.alarm_store.close()
            if self.history is not None:
                self.history.close()
            log.info("polyhost stopped")

    async def _open_admin(
        self, loop: asyncio.AbstractEventLoop
    ) -> tuple[asyncio.Server, ServerState, asyncio.Task[None]] | None:
        """The admin listener (/metrics, /api; http/admin/listener.py) on its own port, with its own
        small connection cap, so a full main port never locks the operator out; None when
        --admin-port is 0. Raises OSError naming the admin address when it cannot bind."""
        settings = self.settings
        if settings.admin_port == 0:
            return None
        token_file = self.admin_token_file
        samples = self.deployer.container_samples
        registry = container_registry(samples)
        registry.register(self.capture.collector())
        app = AdminApp(
            MetricsRoute(registry),
            # Without a metric history (--no-metrics-history) the API still lists every
            # container, without rates or latencies.
            AdminApi(
                samples,
                self.history,
                self.control.call,
                logs=self.deployer.all_log_streams,
                backlog=self.async_worker.backlog,
                autoscaling=self.autoscaling.call,
                hosting=HostingView(self.deployer, self.router),
            ),
            BearerCheck(None if token_file is None else load_admin_token(token_file)),
            access_log_enabled=settings.access_log,
        )
        state = ServerState(settings, max_connections=ADMIN_MAX_CONNECTIONS)
        try:
            server = await loop.create_server(
                lambda: HttpProtocol(no_invocations, app, state),
                host=settings.admin_host,
                port=settings.admin_port,
                reuse_address=True,
            )
        except OSError as error:
            raise OSError(
                error.errno,
                f"admin listener {settings.admin_host}:{settings.admin_port} (--admin-port): "
                f"{error.strerror}",
            ) from error
        if token_file is None:
            guard = "no token"
        elif self.admin_token_generated:
            guard = f"bearer token required: made one in {token_file} (mode 0600)"
        else:
            guard = f"bearer token required (the one in {token_file})"
        log.info(
            "admin listener on http://%s:%d (/metrics, /api, /ui; %s)",
            settings.admin_host,
            settings.admin_port,
            guard,
        )
        return server, state, loop.create_task(sweep_idle_connections(state))


def run(settings: Settings) -> None:
    """Run the server until SIGINT/SIGTERM, on uvloop when it is installed."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        runner = asyncio.run
    runner(PolyhostServer(settings).serve())
