"""AWS JSON 1.1 adapter: `POST /` with `X-Amz-Target: SageMaker.<Operation>`.

Only translation lives here: decode the JSON object, hand it to the control plane, encode the
result or the `ServiceError` as `{"__type", "message"}`. Validation is the control plane's job.
Decoding runs on the worker thread with the call, so a large body never stalls the event loop,
and a body nesting deeper than any SageMaker request could is refused before it is decoded.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
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
TARGET_PREFIX = "SageMaker."

ControlCall = Callable[[str, dict[str, Any]], Mapping[str, Any]]


def _json_default(value: object) -> object:
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class AwsJsonAdapter:
    """Turns AWS JSON 1.1 requests into `control(operation, params)` calls."""

    def __init__(self, control: ControlCall, max_body_bytes: int) -> None:
        self._control = control
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> tuple[str, int]:
        """Serve one request; returns the operation name and status (for the access log)."""
        request_id = next_request_id().decode()
        operation = "?"
        status = 200
        try:
            target = (header(scope, b"x-amz-target") or b"").decode("latin-1")
            if not target.startswith(TARGET_PREFIX) or len(target) == len(TARGET_PREFIX):
                raise UnknownOperationException(
                    "Missing or malformed X-Amz-Target header: expected 'SageMaker.<Operation>'."
                )
            operation = target[len(TARGET_PREFIX) :]
            try:
                raw = await read_body(scope, receive, self._max_body)
            except BodyTooLarge:
                raise SerializationException(
                    f"Request body exceeds {self._max_body} bytes."
                ) from None
            body = await asyncio.to_thread(self._call, operation, raw)
            await send_response(send, 200, body, self._headers(request_id))
        except ServiceError as error:
            status = error.status
            await self._send_error(send, error, request_id)
        except Exception:  # never a traceback on the wire; the log keeps it
            log.exception("internal error in %s", loggable(operation))
            failure = internal_failure()
            status = failure.status
            await self._send_error(send, failure, request_id)
        return operation, status

    def _call(self, operation: str, raw: bytes) -> bytes:
        """Decode, call the control plane, encode: all of it off the event loop."""
        result = self._control(operation, self._decode(raw))
        return json.dumps(result, default=_json_default, separators=(",", ":")).encode()

    @staticmethod
    def _decode(raw: bytes) -> dict[str, Any]:
        return decode_object(
            raw, "no SageMaker request needs that many. Send the members the operation defines."
        )

    @staticmethod
    def _headers(request_id: str) -> list[tuple[bytes, bytes]]:
        return [(b"content-type", CONTENT_TYPE), (b"x-amzn-requestid", request_id.encode())]

    @staticmethod
    async def _send_error(send: Send, error: ServiceError, request_id: str) -> None:
        status, headers, body = aws_json_error(error, CONTENT_TYPE)
        headers.append((b"x-amzn-requestid", request_id.encode()))
        await send_response(send, status, body, headers)
