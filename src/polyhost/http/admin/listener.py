"""The admin listener's ASGI app: `/metrics` (Prometheus), the JSON API under `/api` and the
dashboard at `/ui` (http/admin/ui.py) that reads it.

Why a second port: what an operator reads (every container's numbers, every endpoint's
failure reason) is not for whoever may invoke a model, and scraping must keep working when the
main port is full of clients. So the admin listener is its own `create_server` (server.py) on
`--admin-host:--admin-port`, loopback by default, with its own small connection cap
(`ADMIN_MAX_CONNECTIONS`, inside the descriptors `http/descriptors.py` keeps back from the main
listener): a flood on the main port cannot lock the operator out, and a scraper gone wrong on
this port cannot take more than a few descriptors.

Every request must carry the bearer token when one is configured (`http/admin/token.py`; off
loopback one is required, `cli.py` refuses to start without it); the check runs before routing,
so without the token every path answers the same 401. Only GET is served. A browser cannot send
that header when it opens `/ui`, so there the token may come from the dashboard's cookie
(http/admin/login.py), and a refused `/ui` answers the page that asks for it.
"""

from __future__ import annotations

import time

from polyhost.errors import AdminUnauthorized, MethodNotAllowed, NoSuchRoute, ServiceError
from polyhost.http.access import log_request, loggable
from polyhost.http.admin.api import PREFIX as API_PREFIX
from polyhost.http.admin.login import LOGIN_CSP, login_page, with_cookie_token
from polyhost.http.admin.token import BearerCheck
from polyhost.http.admin.ui import PREFIX as UI_PREFIX
from polyhost.http.admin.ui import SECURITY_HEADERS, UiRoute
from polyhost.http.app import ExtraRoute
from polyhost.http.errors import aws_json_error
from polyhost.http.io import send_response
from polyhost.http.protocol import Headers
from polyhost.http.types import Receive, Scope, Send

# Connections the admin listener holds at once: a few scrapers, dashboards and `polyhost top`.
ADMIN_MAX_CONNECTIONS = 16


class AdminApp:
    def __init__(
        self,
        metrics: ExtraRoute,
        api: ExtraRoute,
        bearer: BearerCheck,
        access_log_enabled: bool = True,
        ui: ExtraRoute | None = None,
    ) -> None:
        self._metrics = metrics
        self._api = api
        self._bearer = bearer
        self._access_log = access_log_enabled
        self._ui = ui if ui is not None else UiRoute()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # polyhost's own server sends no lifespan events
            return
        started = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        is_ui = path == UI_PREFIX or path.startswith(UI_PREFIX + "/")
        from_cookie = False
        if is_ui and self._bearer.enabled:
            scope, from_cookie = with_cookie_token(scope)
        if not self._bearer.allows(scope):
            if is_ui and method == "GET":
                status = await _login(send, refused=from_cookie)
            else:
                status = await _error(
                    send, AdminUnauthorized("This listener requires Authorization: Bearer <token>.")
                )
        elif path == "/metrics" or path.startswith(API_PREFIX + "/") or is_ui:
            if method != "GET":
                status = await _error(
                    send, MethodNotAllowed(f"Use GET on {loggable(path)}.", "GET")
                )
            elif path == "/metrics":
                status = await self._metrics(scope, receive, send)
            elif is_ui:
                status = await self._ui(scope, receive, send)
            else:
                status = await self._api(scope, receive, send)
        else:
            status = await _error(send, NoSuchRoute(f"No route for {method} {loggable(path)}."))
        if self._access_log:
            client = scope.get("client") or ("-", 0)
            log_request(client[0], method, path, "admin", status, started)


async def _error(send: Send, error: ServiceError) -> int:
    status, headers, body = aws_json_error(error)
    await send_response(send, status, body, headers)
    return status


async def _login(send: Send, refused: bool) -> int:
    """The page that asks a browser for the token (401, as every refusal here)."""
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"cache-control", b"no-store"),
        (b"www-authenticate", b'Bearer realm="polyhost-admin"'),
        (b"content-security-policy", LOGIN_CSP),
        *SECURITY_HEADERS,
    ]
    await send_response(send, 401, login_page(refused), headers)
    return 401


async def no_invocations(
    endpoint_name: str,
    headers: Headers,
    body: bytes | None,
    *,
    url: bytes = b"",
    peer: str | None = None,
) -> tuple[int, Headers, bytes]:
    """The admin listener's answer to an invocation: it serves none (the main port does)."""
    return aws_json_error(NoSuchRoute("Invocations are served on the main port, not this one."))
