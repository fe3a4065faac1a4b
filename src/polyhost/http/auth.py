"""Access control on the wire: every request signed (SigV4), every action allowed by policy.

The checks themselves are `Gate`'s (auth/gate.py), which knows no HTTP; this module is what
puts them on the wire. Where they run:
- invocations, on the fast path, inside the runtime adapter (`Gate.allow_invocation`, once per
  request, with the target headers as condition keys);
- every other route, in `AuthMiddleware` around the ASGI app: it reads the (already capped)
  body, has the signature verified, works out the IAM action and resource from the route, the
  operation and its parameters, and answers a refusal in the shape of the route's protocol.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from polyhost.auth.actions import (
    Target,
    autoscaling_target,
    cloudwatch_target,
    control_plane_target,
    invoke_endpoint_target,
    log_group_arn,
    logs_target,
)
from polyhost.auth.errors import WireProtocol
from polyhost.auth.gate import SAGEMAKER, Gate
from polyhost.errors import ServiceError
from polyhost.http.aws.json_protocol import SAGEMAKER_SERVICE
from polyhost.http.aws.query_protocol import QUERY_FORM_KEY, parse_form
from polyhost.http.errors import Headers, aws_json_error, rest_json_error
from polyhost.http.services.autoscaling import AUTOSCALING_SERVICE
from polyhost.http.services.cloudwatch_logs import LOGS_SERVICE
from polyhost.http.types import ASGIApp, Message, Receive, Scope, Send
from polyhost.naming import log_group
from polyhost.settings import Settings

CLOUDWATCH = frozenset({"monitoring"})
LOGS = frozenset({"logs"})
AUTOSCALING = frozenset({"application-autoscaling"})
CONTROL_TARGET = SAGEMAKER_SERVICE.target_prefix
LOGS_TARGET = LOGS_SERVICE.target_prefix
AUTOSCALING_TARGET = AUTOSCALING_SERVICE.target_prefix
CLOUDWATCH_TARGET = "GraniteServiceVersion20100801."
CLOUDWATCH_RPC_PREFIX = "/service/GraniteServiceVersion20100801/operation/"
INVOCATIONS_PREFIX = "/endpoints/"
INVOCATIONS_SUFFIX = "/invocations"
ASYNC_INVOCATIONS_SUFFIX = "/async-invocations"
LOGS_ROUTE_PREFIX = "/polyhost/endpoints/"
# Routes anyone may call: the server's own liveness, which reveals nothing.
OPEN_PATHS = frozenset({"/ping"})

# An encoder per protocol a route may speak; CloudWatch's adapter registers its own.
ErrorEncoder = Callable[[Scope, ServiceError], tuple[int, Headers, bytes]]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


@dataclass(frozen=True)
class RouteAccess:
    """How one request is checked: the signing names it accepts, its protocol and its action."""

    services: frozenset[str]
    protocol: WireProtocol
    encoder: str  # key into the middleware's encoders
    target: Callable[[bytes], Target | None]  # from the body; None: nothing to authorize
    # What reading the body for `target` found, handed on to the route in the scope under
    # this key (so the route runs the operation that was authorised, never a second reading).
    parsed: dict[str, Any] = field(default_factory=dict)


class AuthMiddleware:
    """ASGI middleware: authenticate and authorize every request but the open ones."""

    def __init__(
        self,
        app: ASGIApp,
        gate: Gate,
        settings: Settings,
        encoders: Mapping[str, ErrorEncoder] | None = None,
    ) -> None:
        self._app = app
        self._gate = gate
        self._settings = settings
        self._encoders: dict[str, ErrorEncoder] = {
            "aws-json": lambda scope, error: aws_json_error(error),
            "rest-json": lambda scope, error: rest_json_error(error),
        }
        self._encoders.update(encoders or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self._gate.enabled
            or scope["path"] in OPEN_PATHS
            # Invocations check themselves in the runtime adapter, on the fast path and here.
            or _is_invocation(scope["path"])
            # The body was over its route's cap and dropped: the route refuses it for its size,
            # which tells an unsigned caller nothing, and no signature could match anyway.
            or scope.get("polyhost.body_too_large")
        ):
            await self._app(scope, receive, send)
            return
        body, more = await _read_all(receive)
        access = self._access(scope, body)
        client = scope.get("client") or (None, 0)
        try:
            principal = self._gate.authenticate(
                scope["method"],
                scope.get("raw_path") or scope["path"].encode("latin-1"),
                scope.get("query_string", b""),
                scope["headers"],
                body,
                access.services,
                access.protocol,
            )
            target = access.target(body)
            if target is not None:
                self._gate.authorize(
                    principal,
                    target,
                    source_ip=client[0],
                    protocol=access.protocol,
                )
        except ServiceError as error:
            encoder = self._encoders.get(access.encoder, self._encoders["aws-json"])
            status, headers, payload = encoder(scope, error)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
            return
        if principal is not None:
            scope = {**scope, "polyhost.principal": principal.name}
        if access.parsed:
            scope = {**scope, **access.parsed}
        await self._app(scope, _replay(body, more, receive), send)

    # -- what a request asks for ---------------------------------------------------------------
    def _access(self, scope: Scope, body: bytes) -> RouteAccess:
        path: str = scope["path"]
        target_header = _header(scope, b"x-amz-target") or ""
        settings = self._settings
        if path == "/" and target_header.startswith(CONTROL_TARGET):
            operation = target_header[len(CONTROL_TARGET) :]
            return RouteAccess(
                SAGEMAKER,
                WireProtocol.JSON,
                "aws-json",
                lambda raw: control_plane_target(
                    operation,
                    _json_params(raw),
                    region=settings.region,
                    account_id=settings.account_id,
                ),
            )
        if path == "/" and target_header.startswith(LOGS_TARGET):
            operation = target_header[len(LOGS_TARGET) :]
            return RouteAccess(
                LOGS,
                WireProtocol.JSON,
                "aws-json",
                lambda raw: logs_target(
                    operation,
                    _json_params(raw),
                    region=settings.region,
                    account_id=settings.account_id,
                ),
            )
        if path == "/" and target_header.startswith(AUTOSCALING_TARGET):
            operation = target_header[len(AUTOSCALING_TARGET) :]
            return RouteAccess(
                AUTOSCALING, WireProtocol.JSON, "aws-json",
                lambda raw: autoscaling_target(operation, _json_params(raw)),
            )  # fmt: skip
        if path == "/" and target_header.startswith(CLOUDWATCH_TARGET):
            operation = target_header[len(CLOUDWATCH_TARGET) :]
            return RouteAccess(
                CLOUDWATCH, WireProtocol.JSON, "cloudwatch-json",
                lambda raw: cloudwatch_target(operation),
            )  # fmt: skip
        if path.startswith(CLOUDWATCH_RPC_PREFIX):
            operation = path[len(CLOUDWATCH_RPC_PREFIX) :]
            return RouteAccess(
                CLOUDWATCH, WireProtocol.JSON, "cloudwatch-cbor",
                lambda raw: cloudwatch_target(operation),
            )  # fmt: skip
        form = (_header(scope, b"content-type") or "").startswith(
            "application/x-www-form-urlencoded"
        )
        if path == "/" and scope["method"] == "POST" and not target_header and form:
            # CloudWatch's query protocol: a form body with Action=<Operation>, read once (a
            # repeated, empty or undecodable Action is refused before anything is authorised).
            parsed: dict[str, Any] = {}

            def query_target(raw: bytes) -> Target:
                form_read = parse_form(raw)
                parsed[QUERY_FORM_KEY] = form_read
                return cloudwatch_target(form_read[0])

            return RouteAccess(
                CLOUDWATCH, WireProtocol.QUERY, "cloudwatch-query", query_target, parsed
            )  # fmt: skip
        if path.startswith(LOGS_ROUTE_PREFIX) and path.endswith("/logs"):
            name = path[len(LOGS_ROUTE_PREFIX) : -len("/logs")]
            arn = log_group_arn(settings.region, settings.account_id, log_group(name))
            return RouteAccess(
                SAGEMAKER, WireProtocol.JSON, "aws-json",
                lambda raw: Target("logs:GetLogEvents", arn),
            )  # fmt: skip
        if path == "/metrics":
            return RouteAccess(
                SAGEMAKER | CLOUDWATCH, WireProtocol.JSON, "aws-json",
                lambda raw: cloudwatch_target("GetMetricData"),
            )  # fmt: skip
        if (
            path.startswith(INVOCATIONS_PREFIX)
            and path.endswith(ASYNC_INVOCATIONS_SUFFIX)
            and len(path) > len(INVOCATIONS_PREFIX) + len(ASYNC_INVOCATIONS_SUFFIX)
        ):
            target = invoke_endpoint_target(
                path[len(INVOCATIONS_PREFIX) : -len(ASYNC_INVOCATIONS_SUFFIX)],
                region=settings.region,
                account_id=settings.account_id,
                operation="InvokeEndpointAsync",
            )
            return RouteAccess(SAGEMAKER, WireProtocol.JSON, "rest-json", lambda raw: target)
        # Anything else still needs a signature; it gets its 404 only once authenticated.
        return RouteAccess(SAGEMAKER, WireProtocol.JSON, "aws-json", lambda raw: None)


def _is_invocation(path: str) -> bool:
    return path.startswith(INVOCATIONS_PREFIX) and path.endswith(INVOCATIONS_SUFFIX)


def _json_params(raw: bytes) -> dict[str, Any]:
    """The request's parameters as far as authorization needs them; {} when not a JSON object
    (the adapter then refuses the body with its own error, after authorization)."""
    try:
        params = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError):
        return {}
    return params if isinstance(params, dict) else {}


async def _read_all(receive: Receive) -> tuple[bytes, bool]:
    """The whole body (the protocol already capped it per route); more=True if the client
    disconnected before the end."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, disconnected: bool, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if disconnected:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
