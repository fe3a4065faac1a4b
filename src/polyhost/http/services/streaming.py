"""REST runtime adapter for `POST /endpoints/{EndpointName}/invocations-response-stream`
(InvokeEndpointWithResponseStream).

The request is InvokeEndpoint's with botocore's header names for this operation: the wanted
type comes in `X-Amzn-SageMaker-Accept` (a plain `Accept` is the client's own, for the event
stream, and is not forwarded), `X-Amzn-SageMaker-Inference-Component` and
`X-Amzn-SageMaker-Session-Id` are refused (polyhost has neither inference components nor
sessions yet: a ValidationError that says so, rather than an answer that ignores them), and
`X-Amzn-SageMaker-Prefix-Aware-Id`, a routing hint for a strategy polyhost does not have, is
ignored. It is signed and authorised as `sagemaker:InvokeEndpointWithResponseStream` on the
endpoint's ARN, with the same condition keys as InvokeEndpoint. An endpoint with
AsyncInferenceConfig takes InvokeEndpointAsync alone: once the caller is allowed, a stream to it
is refused with InvokeEndpoint's ValidationError.

A request refused, or a call that fails before the container's first byte, is answered whole
with InvokeEndpoint's errors (rest-json). Otherwise the answer is `200` with
`Content-Type: application/vnd.amazon.eventstream`, the container's type in
`X-Amzn-SageMaker-Content-Type`, and a body of event-stream messages (`http/aws/eventstream.py`):
one PayloadPart per piece of the container's answer as it arrives, and a ModelStreamError as
the last event when the stream breaks after its first part. The head is written with the first
part, so an answer that fails before any byte can still be refused as such.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from polyhost.auth.actions import INVOKE_WITH_RESPONSE_STREAM, invoke_endpoint_target
from polyhost.auth.gate import Gate
from polyhost.errors import InvokeValidationError, ServiceError
from polyhost.http.access import loggable
from polyhost.http.aws.eventstream import MAX_PAYLOAD as _MAX_PART
from polyhost.http.aws.eventstream import (
    internal_stream_failure,
    model_stream_error,
    payload_part,
    payload_part_frame,
    payload_parts,
)
from polyhost.http.errors import internal_failure
from polyhost.http.protocol import ResponseStream
from polyhost.http.request_ids import next_request_id
from polyhost.http.services.runtime import (
    CUSTOM_ATTRIBUTES_REFUSED,
    MAX_CUSTOM_ATTRIBUTES,
    Headers,
    authenticate,
    body_too_large,
    decode_name,
    error_answer,
)
from polyhost.router.router import InvokeRequest
from polyhost.router.streaming import StreamControl, StreamRouter
from polyhost.router.table import EndpointRoute
from polyhost.settings import Settings

log = logging.getLogger("polyhost.runtime")

OPERATION = INVOKE_WITH_RESPONSE_STREAM
EVENT_STREAM = b"application/vnd.amazon.eventstream"
# From this size on a part's payload is written beside its framing rather than copied into
# one message (below it, one write of one joined message is the cheaper).
_FRAMED = 16 * 1024


class _Consumer:
    """The router's `StreamConsumer`: parts become events on the client's connection."""

    __slots__ = ("_control", "_head", "_out", "_request_id", "written")

    def __init__(self, out: ResponseStream, request_id: bytes) -> None:
        self._out = out
        self._request_id = request_id
        self._head: Headers = []
        self._control: StreamControl | None = None
        self.written = False

    def start(
        self,
        control: StreamControl,
        variant: str,
        content_type: bytes,
        custom_attributes: bytes | None,
    ) -> None:
        self._control = control
        self._head = [
            (b"content-type", EVENT_STREAM),
            (b"x-amzn-sagemaker-content-type", content_type),
            (b"x-amzn-invoked-production-variant", variant.encode()),
            (b"x-amzn-requestid", self._request_id),
        ]
        if custom_attributes is not None:
            self._head.append((b"x-amzn-sagemaker-custom-attributes", custom_attributes))

    def _write(self, event: bytes) -> None:
        if self.written:
            self._out.send(event)
            return
        assert self._control is not None
        self.written = True
        self._out.start(200, self._head, self._control, event)

    def part(self, data: bytes) -> None:
        if self._out.closing:  # the client left before the answer began: stop the container
            if self._control is not None:
                self._control.cancel()
            return
        if self.written and _FRAMED <= len(data) <= _MAX_PART:
            before, after = payload_part_frame(data)  # a large piece is written, not copied
            self._out.send_framed(before, data, after)
        elif len(data) <= _MAX_PART:
            self._write(payload_part(data))
        else:
            for event in payload_parts(data):
                self._write(event)

    def end(self) -> None:
        self._write(b"")
        self._out.finish()

    def broken(self, error_code: str, message: str) -> None:
        self._write(model_stream_error(error_code, message))
        self._out.finish()

    def failed(self) -> None:
        """An error of polyhost's own after the first part: InternalStreamFailure, the end."""
        self._write(internal_stream_failure("An internal error occurred; see the server log."))
        self._out.finish()


class StreamingAdapter:
    """InvokeEndpointWithResponseStream on the wire: headers, access control, events."""

    def __init__(
        self,
        streams: StreamRouter,
        settings: Settings,
        gate: Gate | None = None,
        *,
        routes: Callable[[str], EndpointRoute | None],
    ) -> None:
        """`routes`: the router's table (`Router.route`), to refuse asynchronous endpoints."""
        self._streams = streams
        self._routes = routes
        self._settings = settings
        self.max_body_bytes = settings.max_body_bytes
        self._gate = gate

    async def serve(
        self,
        endpoint_name: str,
        headers: Headers,
        body: bytes | None,
        url: bytes,
        peer: str | None,
        out: ResponseStream,
    ) -> tuple[int, Headers, bytes] | None:
        """The `StreamHandler` of the server's protocol: None once the answer is streamed,
        else the error to write whole."""
        request_id = next_request_id()
        consumer = _Consumer(out, request_id)
        try:
            request = self._prepare(endpoint_name, headers, body, url, peer)
            route = self._routes(endpoint_name)
            if route is not None and route.async_inference is not None:
                raise InvokeValidationError(
                    f"Endpoint {endpoint_name} is configured for asynchronous inference "
                    "(AsyncInferenceConfig), which cannot stream its answers: invoke it with "
                    "InvokeEndpointAsync."
                )
            await self._streams.stream(endpoint_name, request, consumer)
        except ServiceError as error:
            if consumer.written:  # never raised after the first part; kept safe all the same
                consumer.failed()
                return None
            return self._error(error, request_id)
        except Exception:
            log.exception("internal error streaming %s", loggable(endpoint_name))
            if consumer.written:
                consumer.failed()
                return None
            return self._error(internal_failure(), request_id)
        return None

    def _prepare(
        self,
        endpoint_name: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes | None,
        url: bytes,
        peer: str | None,
    ) -> InvokeRequest:
        """The router's request, once the signature is checked, the headers read and access
        control allowed it; raises the ServiceError that refuses it."""
        gate = self._gate
        # The signature comes first: an unsigned request is refused as such whatever else is
        # wrong with it. (A body over the cap cannot match any signature.)
        principal = authenticate(gate, headers, body, url)
        content_type = accept = attributes = inference_id = None
        variant = container = component = None
        for raw_name, value in headers:
            name = raw_name.lower()
            if name == b"content-type":
                content_type = value
            elif not name.startswith(b"x-amzn-sagemaker-"):
                continue
            suffix = name[17:]
            if suffix == b"accept":
                accept = value
            elif suffix == b"custom-attributes":
                if len(value) > MAX_CUSTOM_ATTRIBUTES or not value.isascii():
                    raise InvokeValidationError(CUSTOM_ATTRIBUTES_REFUSED)
                attributes = value
            elif suffix == b"target-container-hostname":
                container = decode_name(value, "X-Amzn-SageMaker-Target-Container-Hostname")
            elif suffix == b"target-variant":
                variant = decode_name(value, "X-Amzn-SageMaker-Target-Variant")
            elif suffix == b"inference-id":
                inference_id = value
            elif suffix == b"session-id":
                raise InvokeValidationError(
                    "SessionId is not supported: polyhost has no stateful sessions yet. "
                    "Remove the X-Amzn-SageMaker-Session-Id header."
                )
            elif suffix == b"inference-component":
                component = decode_name(value, "X-Amzn-SageMaker-Inference-Component")
        if body is None:
            raise body_too_large(self.max_body_bytes, OPERATION)
        if gate is not None and principal is not None:
            settings = self._settings
            gate.authorize(
                principal,
                invoke_endpoint_target(
                    endpoint_name,
                    region=settings.region,
                    account_id=settings.account_id,
                    operation=OPERATION,
                ),
                source_ip=peer,
                target_container_hostname=container,
                target_variant=variant,
                inference_component_name=component,
            )
        return InvokeRequest(
            body=body,
            content_type=content_type,
            accept=accept,
            custom_attributes=attributes,
            target_variant=variant,
            target_container=container,
            inference_id=inference_id,
            inference_component=component,
        )

    _error = staticmethod(error_answer)
