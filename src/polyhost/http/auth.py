"""Access control on the wire: every request signed (SigV4), every action allowed by policy.

`Gate` holds the server's current `AccessControl` (principals, verifier, decision cache), or
None when the server runs without `--auth-file`; then every check is a no-op and costs one
attribute test. A SIGHUP reload swaps the whole state in one assignment; a bad file keeps the
old one and says why in the log.

Where the checks run:
- invocations, on the fast path, inside the runtime adapter (`Gate.authenticate` before the
  headers are read, `Gate.authorize` with the target headers as condition keys);
- every other route, in `AuthMiddleware` around the ASGI app: it reads the (already capped)
  body, verifies the signature, works out the IAM action and resource from the route, the
  operation and its parameters, and answers a refusal in the shape of the route's protocol.

Messages say no more than AWS's do; which part of a signature failed goes to the log only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from polyhost.auth.actions import (
    Target,
    cloudwatch_target,
    control_plane_target,
    invoke_endpoint_target,
    log_group_arn,
    logs_target,
)
from polyhost.auth.context import request_context
from polyhost.auth.errors import PolicyError, SignatureRefused, WireProtocol, access_denied
from polyhost.auth.guard import AccessControl
from polyhost.auth.principals import Principal
from polyhost.auth.sigv4 import Acceptor
from polyhost.errors import ServiceError
from polyhost.http.errors import Headers, aws_json_error
from polyhost.http.types import ASGIApp, Message, Receive, Scope, Send
from polyhost.naming import log_group
from polyhost.settings import Settings

log = logging.getLogger("polyhost.auth")

SAGEMAKER = frozenset({"sagemaker"})
CLOUDWATCH = frozenset({"monitoring"})
LOGS = frozenset({"logs"})
CONTROL_TARGET = "SageMaker."
LOGS_TARGET = "Logs_20140328."
CLOUDWATCH_TARGET = "GraniteServiceVersion20100801."
CLOUDWATCH_RPC_PREFIX = "/service/GraniteServiceVersion20100801/operation/"
INVOCATIONS_PREFIX = "/endpoints/"
INVOCATIONS_SUFFIX = "/invocations"
LOGS_ROUTE_PREFIX = "/polyhost/endpoints/"
# Routes anyone may call: the server's own liveness, which reveals nothing.
OPEN_PATHS = frozenset({"/ping"})
INVOCATION_TARGETS_MAX = 1024
ALLOWED_INVOCATIONS_MAX = 4096
# (principal, endpoint name, source IP, target container, model, variant)
InvocationKey = tuple[Principal, str, str | None, str | None, str | None, str | None]

# An encoder per protocol a route may speak; CloudWatch's adapter registers its own.
ErrorEncoder = Callable[[Scope, ServiceError], tuple[int, Headers, bytes]]


def load_access_control(settings: Settings) -> AccessControl | None:
    """The access control of `settings.auth_file`; raises PolicyError or OSError if invalid."""
    if settings.auth_file is None:
        return None
    return AccessControl.load(settings.auth_file, region=settings.region)


class Gate:
    """The server's access control as the HTTP layer uses it."""

    def __init__(self, settings: Settings, control: AccessControl | None) -> None:
        self._settings = settings
        self.control = control
        # Endpoint name -> its InvokeEndpoint target: names repeat on every invocation. Any
        # name in a URL lands here, so the map is bounded (and starts over when full).
        self._invocation_targets: dict[str, Target] = {}
        # Invocations already allowed (see `authorize_invocation`); bounded the same way. The
        # runtime adapter reads it before calling that method, saving a call per request.
        self.allowed_invocations: set[InvocationKey] = set()
        self.accept_invocation = _invocation_acceptor(control)

    @property
    def enabled(self) -> bool:
        return self.control is not None

    def reload(self) -> bool:
        """Re-read the auth file (SIGHUP). A bad file keeps the current state; False says so."""
        path = self._settings.auth_file
        if path is None:
            log.info("SIGHUP: no --auth-file to reload")
            return False
        try:
            fresh = AccessControl.load(path, region=self._settings.region)
        except (PolicyError, OSError) as error:
            log.error("auth file %s not reloaded, keeping the previous one: %s", path, error)
            return False
        self.control = fresh
        self.allowed_invocations = set()
        self.accept_invocation = _invocation_acceptor(fresh)
        log.info("auth file %s reloaded: %d principal(s)", path, len(fresh.principals.principals))
        return True

    def authenticate(
        self,
        method: str,
        path: bytes | str,
        query: bytes | str,
        headers: Iterable[tuple[bytes, bytes]],
        body: bytes,
        services: frozenset[str],
        protocol: WireProtocol = WireProtocol.JSON,
    ) -> Principal | None:
        """The principal that signed the request (None when auth is off); raises ServiceError."""
        control = self.control
        if control is None:
            return None
        try:
            verified = control.verifier.verify(
                method, path, query, headers, services=services, body=body
            )
        except SignatureRefused as refused:
            log.info("refused %s %s: %s", method, _short(path), refused.detail or refused.reason)
            raise refused.service_error(protocol) from None
        return verified.principal

    def authorize(
        self,
        principal: Principal | None,
        target: Target,
        *,
        source_ip: str | None,
        protocol: WireProtocol = WireProtocol.JSON,
        target_container_hostname: str | None = None,
        target_model: str | None = None,
        target_variant: str | None = None,
        inference_component_name: str | None = None,
    ) -> None:
        """Raise AccessDenied unless the principal's policies allow `target`."""
        control = self.control
        if control is None or principal is None:
            return
        context = request_context(
            username=principal.name,
            source_ip=source_ip,
            secure_transport=False,  # polyhost serves plain HTTP; TLS ends in front of it
            target_container_hostname=target_container_hostname,
            target_model=target_model,
            target_variant=target_variant,
            inference_component_name=inference_component_name,
        )
        decision = control.authorizer.decide(principal, target.action, target.resource, context)
        if not decision.allowed:
            log.info(
                "denied %s: %s on %s (%s)",
                principal.name,
                target.action,
                _short(target.resource),
                decision.explain(),
            )
            raise access_denied(
                protocol,
                account_id=self._settings.account_id,
                username=principal.name,
                action=target.action,
                resource=target.resource,
                explicit=decision.statement is not None,
            )

    def authorize_invocation(
        self,
        principal: Principal | None,
        endpoint_name: str,
        *,
        source_ip: str | None,
        target_container_hostname: str | None,
        target_model: str | None,
        target_variant: str | None,
    ) -> None:
        """`authorize` for InvokeEndpoint, remembering what it allowed.

        The decision depends on the principal's policies and the condition keys they read;
        for an invocation every one of those keys is fixed by the principal (aws:username),
        the server (aws:SecureTransport, the region and account in the ARN) or an argument
        here, except the time, and the decisions of a principal whose policies read the time
        are never remembered. So an allowed key stays allowed for as long as the principal
        exists; principals are compared by identity and a reload makes new ones (and empties
        the set). Denials are not remembered: each is decided, logged and refused in full.
        """
        if principal is None:
            return
        key = (
            principal,
            endpoint_name,
            source_ip,
            target_container_hostname,
            target_model,
            target_variant,
        )
        allowed = self.allowed_invocations
        if key in allowed:
            return
        self.authorize(
            principal,
            self.invocation_target(endpoint_name),
            source_ip=source_ip,
            target_container_hostname=target_container_hostname,
            target_model=target_model,
            target_variant=target_variant,
        )
        if principal.cacheable and self.control is not None:
            if len(allowed) >= ALLOWED_INVOCATIONS_MAX:
                allowed.clear()
            allowed.add(key)

    def invocation_target(self, endpoint_name: str) -> Target:
        targets = self._invocation_targets
        target = targets.get(endpoint_name)
        if target is None:
            if len(targets) >= INVOCATION_TARGETS_MAX:
                targets.clear()
            target = targets[endpoint_name] = invoke_endpoint_target(
                endpoint_name, region=self._settings.region, account_id=self._settings.account_id
            )
        return target


def _invocation_acceptor(control: AccessControl | None) -> Acceptor | None:
    """The compiled path of SigV4 for `POST /endpoints/NAME/invocations`, bound once: the
    runtime adapter calls it with (headers, path, query, body) and, when it answers None, calls
    `Gate.authenticate`, which verifies in full and refuses what must be refused."""
    if control is None:
        return None
    return control.verifier.acceptor("POST", SAGEMAKER)


def _short(value: bytes | str, limit: int = 200) -> str:
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return text if len(text) <= limit else text[:limit] + f"...({len(text)} chars)"


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
            "aws-json": lambda scope, error: aws_json_error(error)
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
            # CloudWatch's query protocol: a form body with Action=<Operation>.
            return RouteAccess(
                CLOUDWATCH, WireProtocol.QUERY, "cloudwatch-query",
                lambda raw: cloudwatch_target(_form_action(raw)),
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


def _form_action(raw: bytes) -> str:
    try:
        form = parse_qs(raw.decode("ascii"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return ""
    actions = form.get("Action") or [""]
    return actions[0]


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
