"""CloudWatch Logs' AWS JSON 1.1 adapter: `POST /` with `X-Amz-Target: Logs_20140328.<Op>`.

So `boto3.client("logs", endpoint_url=...)` reads containers' logs from polyhost as it would
from CloudWatch. Only translation lives here, as in `awsjson.py`: decode the JSON object, hand
it to `LogsApi` (logs/api.py), encode the answer or the error as `{"__type", "message"}`.

The list of streams is taken on the event loop (the deployer's state lives there and costs no
I/O to read); decoding, file reading and encoding run on a worker thread, so a large scan never
stalls invocations.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from polyhost.errors import SerializationException, ServiceError, UnknownOperationException
from polyhost.http.access import loggable
from polyhost.http.aws.json_depth import decode_object
from polyhost.http.errors import aws_json_error, internal_failure
from polyhost.http.io import BodyTooLarge, header, read_body, send_response
from polyhost.http.request_ids import next_request_id
from polyhost.http.types import Receive, Scope, Send
from polyhost.logs.api import Catalog, LogsApi

log = logging.getLogger("polyhost.http")

CONTENT_TYPE = b"application/x-amz-json-1.1"
LOGS_TARGET = "Logs_20140328"  # the service part of X-Amz-Target, as PolyhostApp routes it
TARGET_PREFIX = LOGS_TARGET + "."
# Far above any request of these four operations (a hundred stream names and a token).
MAX_BODY_BYTES = 256 * 1024

CatalogSource = Callable[[], Catalog]


class CloudWatchLogsAdapter:
    """Serves CloudWatch Logs' read operations over the streams `catalog()` lists."""

    def __init__(
        self, api: LogsApi, catalog: CatalogSource, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self._api = api
        self._catalog = catalog
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
                    f"Missing or malformed X-Amz-Target header: expected '{TARGET_PREFIX}"
                    "<Operation>'."
                )
            operation = target[len(TARGET_PREFIX) :]
            try:
                raw = await read_body(scope, receive, self._max_body)
            except BodyTooLarge:
                raise SerializationException(
                    f"Request body exceeds {self._max_body} bytes."
                ) from None
            catalog = self._catalog()
            body = await asyncio.to_thread(self._call, operation, raw, catalog)
            await send_response(send, 200, body, self._headers(request_id))
        except ServiceError as error:
            status = error.status
            await self._send_error(send, error, request_id)
        except Exception:  # never a traceback on the wire; the log keeps it
            log.exception("internal error in CloudWatch Logs %s", loggable(operation))
            failure = internal_failure()
            status = failure.status
            await self._send_error(send, failure, request_id)
        return operation, status

    def _call(self, operation: str, raw: bytes, catalog: Catalog) -> bytes:
        result = self._api.call(operation, _decode(raw), catalog)
        return json.dumps(result, separators=(",", ":")).encode("utf-8", "surrogatepass")

    @staticmethod
    def _headers(request_id: str) -> list[tuple[bytes, bytes]]:
        return [(b"content-type", CONTENT_TYPE), (b"x-amzn-requestid", request_id.encode())]

    @staticmethod
    async def _send_error(send: Send, error: ServiceError, request_id: str) -> None:
        status, headers, body = aws_json_error(error, CONTENT_TYPE)
        headers.append((b"x-amzn-requestid", request_id.encode()))
        await send_response(send, status, body, headers)


def _decode(raw: bytes) -> dict[str, Any]:
    return decode_object(raw, "no CloudWatch Logs request needs that many.")
