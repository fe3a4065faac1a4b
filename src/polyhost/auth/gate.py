"""The server's access control as its adapters use it: who signed a request, may they do it.

`Gate` holds the server's current `AccessControl` (principals, verifier, decision cache), or
None when the server runs without `--auth-file`; then every check is a no-op and `enabled` is
False, which the adapters test before calling anything. A SIGHUP reload swaps the whole state;
a bad file keeps the old one and says why in the log.

No HTTP here: the adapters hand over what they read off the wire (method, raw path and query,
header pairs, body, the peer's address) and put a refusal (a `ServiceError`) back on it.

- Invocations call `allow_invocation` once per request, on the hot path: the compiled SigV4
  path first, then the invocations already allowed, and only when both miss the full
  verification and the policy decision.
- Every other route calls `authenticate`, then `authorize` with the target the route names.

Messages say no more than AWS's do; which part of a signature failed goes to the log only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from polyhost.auth.actions import Target, invoke_endpoint_target
from polyhost.auth.context import request_context
from polyhost.auth.errors import PolicyError, SignatureRefused, WireProtocol, access_denied
from polyhost.auth.guard import AccessControl
from polyhost.auth.principals import Principal
from polyhost.auth.sigv4 import Acceptor
from polyhost.settings import Settings

log = logging.getLogger("polyhost.auth")

# The signing name (the service of the credential scope) SageMaker's requests carry.
SAGEMAKER = frozenset({"sagemaker"})
INVOCATION_TARGETS_MAX = 1024
ALLOWED_INVOCATIONS_MAX = 4096
# (principal, endpoint name, source IP, target container, model, variant)
InvocationKey = tuple[Principal, str, str | None, str | None, str | None, str | None, str | None]


def load_access_control(settings: Settings) -> AccessControl | None:
    """The access control of `settings.auth_file`; raises PolicyError or OSError if invalid."""
    if settings.auth_file is None:
        return None
    return AccessControl.load(settings.auth_file, region=settings.region)


class Gate:
    """Authenticates and authorizes requests against the server's current access control."""

    def __init__(self, settings: Settings, control: AccessControl | None) -> None:
        self._settings = settings
        self.control = control
        # A plain attribute, not a property: the invocation path reads it on every request.
        self.enabled = control is not None
        # Endpoint name -> its InvokeEndpoint target: names repeat on every invocation. Any
        # name in a URL lands here, so the map is bounded (and starts over when full).
        self._invocation_targets: dict[str, Target] = {}
        # Invocations already allowed (see `allow_invocation`); bounded the same way.
        self._allowed_invocations: set[InvocationKey] = set()
        self._accept_invocation = _invocation_acceptor(control)

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
        # Reloads run on the event loop, between requests: no request sees half of this.
        self.control = fresh
        self.enabled = True
        self._allowed_invocations = set()
        self._accept_invocation = _invocation_acceptor(fresh)
        log.info("auth file %s reloaded: %d principal(s)", path, len(fresh.principals.principals))
        return True

    def allow_invocation(
        self,
        url: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        endpoint_name: str,
        source_ip: str | None,
        target_container_hostname: str | None,
        target_model: str | None,
        target_variant: str | None,
        inference_component: str | None = None,
    ) -> None:
        """Raise the ServiceError that refuses this InvokeEndpoint request, if any.

        `url` is the request target as received (path and query, still percent-encoded), which
        the signature covers; the target headers are the condition keys of the same names, as
        the runtime adapter read them. The arguments are positional on purpose: this is the
        one Python call access control adds to an invocation, and on that path every call and
        every keyword costs several times its in-process price.

        The accepting case takes two C calls and a set lookup: the compiled SigV4 path, then
        the invocations already allowed. Those are remembered by everything a decision can
        depend on: the principal's policies and the condition keys they read. For an
        invocation every one of those keys is fixed by the principal (aws:username), the
        server (aws:SecureTransport, the region and account in the ARN) or an argument here,
        except the time, and the decisions of a principal whose policies read the time are
        never remembered. So an allowed key stays allowed for as long as the principal
        exists; principals are compared by identity and a reload makes new ones (and empties
        the set). Denials are not remembered: each is decided, logged and refused in full.
        """
        path, _, query = url.partition(b"?")
        accept = self._accept_invocation
        verified = accept(headers, path, query, body) if accept is not None else None
        if verified is not None:
            principal = verified.principal
        else:  # not for the compiled path (or none built): verify in full, refuse if refused
            signer = self.authenticate("POST", path, query, headers, body, SAGEMAKER)
            if signer is None:  # access control is off
                return
            principal = signer
        key = (
            principal,
            endpoint_name,
            source_ip,
            target_container_hostname,
            target_model,
            target_variant,
            inference_component,
        )
        if key not in self._allowed_invocations:
            self._decide_invocation(key)

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

    def _decide_invocation(self, key: InvocationKey) -> None:
        """The policy decision of an invocation not remembered yet; remembers an allowance."""
        principal, endpoint_name, source_ip, container, model, variant, component = key
        self.authorize(
            principal,
            self._invocation_target(endpoint_name),
            source_ip=source_ip,
            target_container_hostname=container,
            target_model=model,
            target_variant=variant,
            inference_component_name=component,
        )
        allowed = self._allowed_invocations
        if principal.cacheable:
            if len(allowed) >= ALLOWED_INVOCATIONS_MAX:
                allowed.clear()
            allowed.add(key)

    def _invocation_target(self, endpoint_name: str) -> Target:
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
    """The compiled path of SigV4 for `POST /endpoints/NAME/invocations`, bound once:
    `allow_invocation` calls it with (headers, path, query, body) and, when it answers None,
    calls `authenticate`, which verifies in full and refuses what must be refused."""
    if control is None:
        return None
    return control.verifier.acceptor("POST", SAGEMAKER)


def _short(value: bytes | str, limit: int = 200) -> str:
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    return text if len(text) <= limit else text[:limit] + f"...({len(text)} chars)"
