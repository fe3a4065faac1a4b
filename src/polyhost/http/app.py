"""The one ASGI app on the server's port: routes by path to the wire adapters.

`POST /` → by X-Amz-Target's service prefix to its adapter (`targets`, e.g. `Logs_20140328`
for CloudWatch Logs), else the AWS JSON 1.1 control plane; `POST /endpoints/{name}/invocations`
→ runtime;
`GET /ping` → liveness of the server itself. One access-log line per request.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from polyhost.errors import MethodNotAllowed, NoSuchRoute
from polyhost.http.access import log_request, loggable
from polyhost.http.aws.json_protocol import AwsJsonAdapter
from polyhost.http.errors import aws_json_error
from polyhost.http.io import header, send_response
from polyhost.http.types import Receive, Scope, Send

RuntimeHandler = Callable[[Scope, Receive, Send, str], Awaitable[int]]
ExtraRoute = Callable[[Scope, Receive, Send], Awaitable[int]]
# An adapter of `POST /` for one X-Amz-Target service; returns (operation, status).
TargetHandler = Callable[[Scope, Receive, Send], Awaitable[tuple[str, int]]]

_INVOCATIONS_SUFFIX = "/invocations"
_ENDPOINTS_PREFIX = "/endpoints/"


class PolyhostApp:
    def __init__(
        self,
        control: AwsJsonAdapter,
        runtime: RuntimeHandler | None = None,
        routes: dict[str, ExtraRoute] | None = None,
        access_log_enabled: bool = True,
        targets: dict[str, TargetHandler] | None = None,
        untargeted: TargetHandler | None = None,
    ) -> None:
        self._control = control
        self._runtime = runtime
        self._routes = routes or {}
        self._access_log = access_log_enabled
        self._targets = targets or {}
        # A form `POST /` without X-Amz-Target: only the query protocol (CloudWatch) sends it;
        # any other target-less body is the control plane's to refuse.
        self._untargeted = untargeted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        what = ""
        # Every handler returns the status it sent: no wrapper around `send` on the hot path.
        if path == "/" and method == "POST":
            what, status = await self._target(scope)(scope, receive, send)
        elif (
            path.startswith(_ENDPOINTS_PREFIX)
            and path.endswith(_INVOCATIONS_SUFFIX)
            and self._runtime is not None
        ):
            name = path[len(_ENDPOINTS_PREFIX) : -len(_INVOCATIONS_SUFFIX)]
            if method != "POST":
                status = await self._not_found(send, method, path, 405)
            else:
                what = name
                status = await self._runtime(scope, receive, send, name)
        elif path == "/ping" and method in ("GET", "HEAD"):
            await send_response(send, 200, b"", [(b"content-type", b"text/plain")])
            status = 200
        else:
            route = self._route(path)
            if route is None:
                status = await self._not_found(send, method, path, 404)
            else:
                status = await route(scope, receive, send)
        if self._access_log:
            client = scope.get("client") or ("-", 0)
            log_request(client[0], method, path, what, status, started)

    def _target(self, scope: Scope) -> TargetHandler:
        """The adapter of a `POST /` by its X-Amz-Target service; the control plane by default."""
        target = header(scope, b"x-amz-target")
        if (
            target is None
            and self._untargeted is not None
            and (header(scope, b"content-type") or b"").startswith(
                b"application/x-www-form-urlencoded"
            )
        ):
            return self._untargeted
        if self._targets:
            service = (target or b"").partition(b".")[0]
            handler = self._targets.get(service.decode("latin-1"))
            if handler is not None:
                return handler
        return self._control

    def _route(self, path: str) -> ExtraRoute | None:
        route = self._routes.get(path)
        if route is not None:
            return route
        for prefix, candidate in self._routes.items():
            if path.startswith(prefix + "/"):
                return candidate
        return None

    @staticmethod
    async def _not_found(send: Send, method: str, path: str, status: int) -> int:
        message = f"No route for {method} {loggable(path)}."
        error = MethodNotAllowed(message, "POST") if status == 405 else NoSuchRoute(message)
        status, headers, body = aws_json_error(error)
        await send_response(send, status, body, headers)
        return status

    @staticmethod
    async def _lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
