"""REST runtime adapter: `POST /endpoints/{EndpointName}/invocations` (InvokeEndpoint).

Reads the headers SageMaker's runtime defines, takes the body up to the 6 MiB limit without
buffering more, and answers with the router's result or error in the rest-json shape botocore
expects: `x-amzn-ErrorType` header plus a JSON body with `message` (and ModelError's fields).

`answer()` is the whole adapter as plain bytes in, plain bytes out, and `handle()` wraps it for
ASGI. The server's own HTTP protocol calls `begin()`, the same adapter without a coroutine: it
answers at once what it can refuse at once, and otherwise hands the request to the router's fast
lane (`Router.begin`), whose callback writes the answer; only what that lane declines runs as a
task. Every request of the hot path so costs no task, future or coroutine of its own.

Data capture (`capture/`) is hooked here, where the request and its answer both are: with no
endpoint capturing, it costs one attribute check per invocation; for one that captures, a draw
(InitialSamplingPercentage) and, when sampled, the answer's callback queues a copy for the
writer after the answer is handed back (docs/data-capture.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import cast

from polyhost.auth.gate import SAGEMAKER, Gate
from polyhost.auth.principals import Principal
from polyhost.capture.config import CaptureTarget
from polyhost.capture.service import DataCapture
from polyhost.errors import InvokeValidationError, ServiceError
from polyhost.http.access import loggable
from polyhost.http.errors import internal_failure, rest_json_error
from polyhost.http.io import BodyTooLarge, read_body, send_response
from polyhost.http.request_ids import next_request_id
from polyhost.http.types import Receive, Scope, Send
from polyhost.router.router import Done, InvokeRequest, InvokeResult, Router
from polyhost.settings import MiB

log = logging.getLogger("polyhost.runtime")

MAX_CUSTOM_ATTRIBUTES = 1024
CUSTOM_ATTRIBUTES_REFUSED = "CustomAttributes must be at most 1024 visible US-ASCII characters."
Headers = list[tuple[bytes, bytes]]
# Where `begin` puts an answer it did not return: status, headers, body.
Reply = Callable[[int, Headers, bytes], None]

# The pieces below are shared with InvokeEndpointWithResponseStream's adapter, whose request is
# this one's with other header names. Each header loop stays its own: this one is inlined in
# `_prepare` so that InvokeEndpoint pays no call per header, and the two read different names in
# a different order relative to the signature check.


def decode_name(value: bytes, header: str) -> str:
    """A target header's value as a name; the caller's error when it is not ASCII."""
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise InvokeValidationError(f"Header {header} must be ASCII.") from None


def body_too_large(max_body_bytes: int, operation: str) -> InvokeValidationError:
    """The refusal of a body the protocol dropped for being over the cap."""
    return InvokeValidationError(
        f"Request body is larger than {max_body_bytes} bytes "
        f"({max_body_bytes / MiB:g} MB), the most "
        f"{operation} accepts. Send a smaller payload."
    )


def authenticate(
    gate: Gate | None, headers: Sequence[tuple[bytes, bytes]], body: bytes | None, url: bytes
) -> Principal | None:
    """The request's principal once its signature is checked, or None with access control off
    (or for a dropped body, which no signature can match); raises the refusal of a bad one."""
    if gate is not None and gate.enabled and body is not None:
        path, _, query = url.partition(b"?")
        return gate.authenticate("POST", path, query, headers, body, SAGEMAKER)
    return None


def error_answer(error: ServiceError, request_id: bytes) -> tuple[int, Headers, bytes]:
    """`error` on the wire in rest-json, with the request's id."""
    status, headers, body = rest_json_error(error)
    headers.append((b"x-amzn-requestid", request_id))
    return status, headers, body


class RuntimeAdapter:
    def __init__(
        self,
        router: Router,
        max_body_bytes: int,
        gate: Gate | None = None,
        capture: DataCapture | None = None,
    ) -> None:
        self._router = router
        self.max_body_bytes = max_body_bytes
        self._gate = gate
        self._capture = capture

    async def answer(
        self,
        endpoint_name: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes | None,
        *,
        url: bytes = b"",
        peer: str | None = None,
    ) -> tuple[int, Headers, bytes]:
        """InvokeEndpoint: `body` None means it was larger than the limit (and was dropped).

        `url` is the request target as received (path and query, still percent-encoded) and
        `peer` the client's address: with access control on, the signature covers the first
        and `aws:SourceIp` is the second.
        """
        request_id = next_request_id()
        try:
            request = self._prepare(endpoint_name, headers, body, url, peer)
            result = await self._router.invoke(endpoint_name, request)
        except ServiceError as error:
            return self._error(error, request_id)
        except Exception:
            log.exception("internal error invoking %s", loggable(endpoint_name))
            return self._error(internal_failure(), request_id)
        capture = self._capture
        if capture is not None and capture.targets:
            target = capture.targets.get(endpoint_name)
            if target is not None and target.sampler.sampled():
                self._offer(target, request, result)
        out = [
            (b"content-type", result.content_type),
            (b"x-amzn-invoked-production-variant", result.variant.encode()),
            (b"x-amzn-requestid", request_id),
        ]
        if result.custom_attributes is not None:
            out.append((b"x-amzn-sagemaker-custom-attributes", result.custom_attributes))
        return 200, out, result.body

    def _prepare(
        self,
        endpoint_name: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes | None,
        url: bytes,
        peer: str | None,
    ) -> InvokeRequest:
        """The request the router gets, once the headers are read and access control allowed
        it; raises the ServiceError that refuses it."""
        # With access control on, the gate's one call per request is the only other Python
        # call here: on this path every call costs several times its in-process price
        # (docs/auth.md).
        content_type = accept = attributes = inference_id = None
        variant = container = model = component = None
        try:
            for raw_name, value in headers:
                name = raw_name.lower()
                if name == b"content-type":
                    content_type = value
                elif name == b"accept":
                    accept = value
                elif name.startswith(b"x-amzn-sagemaker-"):
                    suffix = name[17:]
                    if suffix == b"custom-attributes":
                        if len(value) > MAX_CUSTOM_ATTRIBUTES or not value.isascii():
                            raise InvokeValidationError(CUSTOM_ATTRIBUTES_REFUSED)
                        attributes = value
                    elif suffix == b"target-container-hostname":
                        container = decode_name(value, "X-Amzn-SageMaker-Target-Container-Hostname")
                    elif suffix == b"target-variant":
                        variant = decode_name(value, "X-Amzn-SageMaker-Target-Variant")
                    elif suffix == b"target-model":
                        model = decode_name(value, "X-Amzn-SageMaker-Target-Model")
                    elif suffix == b"inference-id":
                        inference_id = value
                    elif suffix == b"inference-component":
                        component = decode_name(value, "X-Amzn-SageMaker-Inference-Component")
        except InvokeValidationError:
            # The signature comes first: an unsigned request is refused as such whatever
            # else is wrong with it.
            authenticate(self._gate, headers, body, url)
            raise
        if body is None:  # no signature could match a body that was dropped
            raise body_too_large(self.max_body_bytes, "InvokeEndpoint")
        gate = self._gate
        if gate is not None and gate.enabled:
            # Positional: see Gate.allow_invocation.
            gate.allow_invocation(
                url, headers, body, endpoint_name, peer, container, model, variant, component
            )
        return InvokeRequest(
            body=body,
            content_type=content_type,
            accept=accept,
            custom_attributes=attributes,
            target_variant=variant,
            target_container=container,
            target_model=model,
            inference_id=inference_id,
            inference_component=component,
        )

    def begin(
        self,
        endpoint_name: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes | None,
        url: bytes,
        peer: str | None,
        reply: Reply,
    ) -> tuple[int, Headers, bytes] | None:
        """`answer` for the server's own protocol: the answer when it is known at once (a
        refusal), else None, and `reply` is called once with it later (never from inside
        this call)."""
        request_id = next_request_id()
        try:
            request = self._prepare(endpoint_name, headers, body, url, peer)
            done: Done = self._done
            token: object = (reply, request_id)
            capture = self._capture
            if capture is not None and capture.targets:
                target = capture.targets.get(endpoint_name)
                if target is not None and target.sampler.sampled():
                    done, token = self._done_captured, (reply, request_id, request, target)
            if self._router.begin(endpoint_name, request, done, token):
                return None
        except ServiceError as error:
            return self._error(error, request_id)
        except Exception:
            log.exception("internal error invoking %s", loggable(endpoint_name))
            return self._error(internal_failure(), request_id)
        asyncio.get_running_loop().create_task(self._invoke(endpoint_name, request, done, token))
        return None

    async def _invoke(
        self, endpoint_name: str, request: InvokeRequest, done: Done, token: object
    ) -> None:
        """What the router's fast lane declined (a first connection, a pipeline, a remote
        container's pool): the coroutine path, answered through `done` all the same."""
        try:
            result = await self._router.invoke(endpoint_name, request)
        except ServiceError as error:
            done(token, None, error)
            return
        except Exception:
            log.exception("internal error invoking %s", loggable(endpoint_name))
            done(token, None, internal_failure())
            return
        done(token, result, None)

    def _done_captured(
        self, token: object, result: InvokeResult | None, error: ServiceError | None
    ) -> None:
        """`_done` for a sampled invocation of an endpoint that captures: the answer goes
        back first, then a copy is queued for the writer."""
        reply, request_id, request, target = cast(
            tuple[Reply, bytes, InvokeRequest, CaptureTarget], token
        )
        self._done((reply, request_id), result, error)
        if result is not None:
            capture = self._capture
            assert capture is not None
            try:  # `_offer` inlined: one call less per captured invocation
                capture.offer(target, request, result)
            except Exception:
                log.exception("data capture of %s failed", loggable(target.endpoint))

    def _offer(self, target: CaptureTarget, request: InvokeRequest, result: InvokeResult) -> None:
        """Queue a capture; whatever goes wrong there, the invocation was answered."""
        capture = self._capture
        assert capture is not None
        try:
            capture.offer(target, request, result)
        except Exception:
            log.exception("data capture of %s failed", loggable(target.endpoint))

    def _done(self, token: object, result: InvokeResult | None, error: ServiceError | None) -> None:
        reply, request_id = cast(tuple[Reply, bytes], token)
        if result is None:
            reply(*self._error(error or internal_failure(), request_id))
            return
        out = [
            (b"content-type", result.content_type),
            (b"x-amzn-invoked-production-variant", result.variant.encode()),
            (b"x-amzn-requestid", request_id),
        ]
        if result.custom_attributes is not None:
            out.append((b"x-amzn-sagemaker-custom-attributes", result.custom_attributes))
        reply(200, out, result.body)

    async def handle(self, scope: Scope, receive: Receive, send: Send, endpoint_name: str) -> int:
        """The same as `answer`, for an ASGI server."""
        body: bytes | None
        try:
            body = await read_body(scope, receive, self.max_body_bytes)
        except BodyTooLarge:
            body = None
        url = scope.get("raw_path") or scope["path"].encode("latin-1")
        if scope.get("query_string"):
            url += b"?" + scope["query_string"]
        client = scope.get("client") or (None, 0)
        status, headers, payload = await self.answer(
            endpoint_name, scope["headers"], body, url=url, peer=client[0]
        )
        await send_response(send, status, payload, headers)
        return status

    _error = staticmethod(error_answer)
