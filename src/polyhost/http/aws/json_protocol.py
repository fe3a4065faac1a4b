"""AWS JSON 1.1 on `POST /`: one adapter for every service polyhost speaks it for.

A service is told apart by its `X-Amz-Target` prefix (`SageMaker.<Operation>` for the control
plane, `Logs_20140328.<Operation>` for CloudWatch Logs); everything else on the wire is the
protocol's and so the same for both: the target checked, the body read up to a cap, the JSON
object decoded, the answer or the `ServiceError` encoded as `{"__type", "message"}` with
`x-amzn-RequestId`. Only translation lives here: validation is the service's job.

Decoding, the call and encoding run on a worker thread, so a large body or a long scan never
stalls the event loop, and a body nesting deeper than any request of the service could is
refused before it is decoded. What a service must read on the event loop first (CloudWatch Logs'
list of streams, the deployer's state) its `bind` takes there, before the thread starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from polyhost.errors import (
    SerializationException,
    ServiceError,
    UnknownOperationException,
)
from polyhost.http.access import loggable
from polyhost.http.aws.json_depth import decode_object
from polyhost.http.errors import aws_json_error, internal_failure
from polyhost.http.io import BodyTooLarge, header, read_body, send_response
from polyhost.http.request_ids import next_request_id
from polyhost.http.types import Receive, Scope, Send

log = logging.getLogger("polyhost.http")

CONTENT_TYPE = b"application/x-amz-json-1.1"

# A service's operation as the adapter calls it, on a worker thread: the operation's name and
# the decoded JSON object in, the JSON-able answer out, or a ServiceError raised.
ServiceCall = Callable[[str, dict[str, Any]], Mapping[str, Any]]
# Run on the event loop once per request; returns the call the worker thread then makes.
ServiceBinding = Callable[[], ServiceCall]


@dataclass(frozen=True, slots=True)
class JsonService:
    """What tells one AWS JSON 1.1 service from another on the wire (and in the log)."""

    name: str  # for the log: "internal error in <name> <Operation>"
    target_prefix: str  # of X-Amz-Target, dot included: "SageMaker."
    too_deep: str  # ends the message refusing a body nested past json_depth.MAX_DEPTH


SAGEMAKER_SERVICE = JsonService(
    "SageMaker",
    "SageMaker.",
    "no SageMaker request needs that many. Send the members the operation defines.",
)


def _json_default(value: object) -> object:
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class AwsJsonAdapter:
    """Turns one service's AWS JSON 1.1 requests into calls of that service."""

    def __init__(self, service: JsonService, bind: ServiceBinding, max_body_bytes: int) -> None:
        self._service = service
        self._prefix = service.target_prefix
        self._bind = bind
        self._max_body = max_body_bytes

    @classmethod
    def sagemaker(cls, control: ServiceCall, max_body_bytes: int) -> AwsJsonAdapter:
        """The control plane's adapter: `control(operation, params)`, nothing on the loop."""
        return cls(SAGEMAKER_SERVICE, lambda: control, max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> tuple[str, int]:
        """Serve one request; returns the operation name and status (for the access log)."""
        request_id = next_request_id().decode()
        operation = "?"
        status = 200
        try:
            prefix = self._prefix
            target = (header(scope, b"x-amz-target") or b"").decode("latin-1")
            if not target.startswith(prefix) or len(target) == len(prefix):
                raise UnknownOperationException(
                    f"Missing or malformed X-Amz-Target header: expected '{prefix}<Operation>'."
                )
            operation = target[len(prefix) :]
            try:
                raw = await read_body(scope, receive, self._max_body)
            except BodyTooLarge:
                raise SerializationException(
                    f"Request body exceeds {self._max_body} bytes."
                ) from None
            call = self._bind()
            body = await asyncio.to_thread(self._call, call, operation, raw)
            await send_response(send, 200, body, self._headers(request_id))
        except ServiceError as error:
            status = error.status
            await self._send_error(send, error, request_id)
        except Exception:  # never a traceback on the wire; the log keeps it
            log.exception("internal error in %s %s", self._service.name, loggable(operation))
            failure = internal_failure()
            status = failure.status
            await self._send_error(send, failure, request_id)
        return operation, status

    def _call(self, call: ServiceCall, operation: str, raw: bytes) -> bytes:
        """Decode, call the service, encode: all of it off the event loop.

        The encoding is ASCII (json's default escapes everything else, lone surrogates from a
        log line included), so the bytes never fail to encode."""
        params = decode_object(raw, self._service.too_deep)
        result = call(operation, params)
        return json.dumps(result, default=_json_default, separators=(",", ":")).encode()

    @staticmethod
    def _headers(request_id: str) -> list[tuple[bytes, bytes]]:
        return [(b"content-type", CONTENT_TYPE), (b"x-amzn-requestid", request_id.encode())]

    @staticmethod
    async def _send_error(send: Send, error: ServiceError, request_id: str) -> None:
        status, headers, body = aws_json_error(error, CONTENT_TYPE)
        headers.append((b"x-amzn-requestid", request_id.encode()))
        await send_response(send, status, body, headers)
