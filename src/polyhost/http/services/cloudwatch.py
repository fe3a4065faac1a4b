"""CloudWatch's API on the server's one port, in every protocol botocore may speak: the
metric reads and, when the server keeps alarms, the metric alarm operations.

| protocol | request | answer |
| --- | --- | --- |
| rpc-v2-cbor | `POST /service/GraniteServiceVersion20100801/operation/<Op>`, CBOR map | CBOR map |
| JSON 1.0 | `POST /`, `X-Amz-Target: GraniteServiceVersion20100801.<Op>`, JSON object | JSON |
| query | `POST /`, form body `Action=<Op>&Version=2010-08-01&...` | XML |

botocore picks JSON 1.0 today (its protocol priority puts `json` before `smithy-rpc-v2-cbor`
for a model listing both), and so does the aws CLI v1; other SDKs pick rpc-v2-cbor; old
clients speak query. Errors go out in the shape of the protocol asked: `__type` (the model's
exception shape) and `message` for JSON and CBOR, plus `x-amzn-query-error: <Code>;Sender`,
which botocore turns back into CloudWatch's code (InvalidParameterValue...); an
`<ErrorResponse>` for query.

This module only translates: `metrics/cloudwatch_api.py` (and `metrics/alarms.py`) have the
semantics. Operations without an output shape (PutMetricAlarm, DeleteAlarms...) answer `{}`
in JSON and CBOR and an empty result in query, as CloudWatch does. Decoding, the
call and encoding run in a worker thread, so a large query never stalls the event loop.

Authorization: give `authorize`, an async callable `(action, scope, body)` called with
`cloudwatch:<Operation>` before the operation runs; it refuses by raising a `ServiceError`,
which goes out in the request's protocol like any other error.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from polyhost.errors import (
    InternalServiceError,
    InvalidAction,
    MethodNotAllowed,
    SerializationException,
    ServiceError,
    UnknownOperationException,
)
from polyhost.http.aws.cbor_protocol import CONTENT_TYPE as CBOR_TYPE
from polyhost.http.aws.cbor_protocol import PROTOCOL_HEADER, decode_cbor, encode_cbor
from polyhost.http.aws.cloudwatch_model import (
    OPERATIONS,
    SMITHY_NAMESPACE,
    TARGET_PREFIX,
    XML_NAMESPACE,
    CloudWatchModel,
    check_input,
    cloudwatch_model,
    form_tree,
)
from polyhost.http.aws.query_protocol import CONTENT_TYPE as XML_TYPE
from polyhost.http.aws.query_protocol import (
    FORM_TYPE,
    QUERY_FORM_KEY,
    parse_form,
    xml_answer,
    xml_error,
)
from polyhost.http.io import BodyTooLarge, header, read_body, send_response
from polyhost.http.request_ids import next_request_id
from polyhost.http.types import Receive, Scope, Send
from polyhost.metrics.cloudwatch_api import CloudWatchApi
from polyhost.settings import MiB

log = logging.getLogger("polyhost.http")

ROUTE_PREFIX = f"/service/{TARGET_PREFIX}"  # the rpc-v2-cbor paths, for the app's route table
JSON_TYPE = b"application/x-amz-json-1.0"
MAX_BODY_BYTES = 1 * MiB
_TARGET = f"{TARGET_PREFIX}.".encode()
_OPERATION_PATH = f"{ROUTE_PREFIX}/operation/"

Wire = Literal["cbor", "json", "query"]
Headers = list[tuple[bytes, bytes]]
Authorize = Callable[[str, Scope, bytes], Awaitable[None]]


def wants_cloudwatch(scope: Scope) -> bool:
    """Whether a `POST /` is CloudWatch's: a JSON 1.0 target of it, or a query-protocol form
    (no other API on this port speaks query)."""
    target = header(scope, b"x-amz-target")
    if target is not None:
        return target.startswith(_TARGET)
    content_type = header(scope, b"content-type") or b""
    return content_type.split(b";", 1)[0].strip().lower() == FORM_TYPE


def _wire(scope: Scope) -> Wire:
    if scope["path"].startswith(ROUTE_PREFIX):
        return "cbor"
    return "json" if header(scope, b"x-amz-target") is not None else "query"


def cloudwatch_error(scope: Scope, error: ServiceError) -> tuple[int, Headers, bytes]:
    """`error` in the shape of the protocol the CloudWatch request `scope` speaks: for a
    middleware that refuses it before it reaches the route (access control, say)."""
    return CloudWatchRoute.encode_error(_wire(scope), error, next_request_id().decode(), None)


def _json_default(value: object) -> object:
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class CloudWatchRoute:
    """ASGI route for all three protocols; returns the status it sent (for the access log)."""

    def __init__(
        self,
        api: CloudWatchApi,
        authorize: Authorize | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._api = api
        self._authorize = authorize
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        request_id = next_request_id().decode()
        wire = _wire(scope)
        model: CloudWatchModel | None = None
        try:
            model = await asyncio.to_thread(cloudwatch_model)
            if scope["method"] != "POST":
                raise MethodNotAllowed(
                    f"CloudWatch's API takes POST, not {scope['method'][:16]}.", "POST"
                )
            try:
                body = await read_body(scope, receive, self._max_body)
            except BodyTooLarge:
                raise SerializationException(
                    f"The request body is larger than {self._max_body} bytes."
                ) from None
            operation, fields = self._operation(wire, scope, body, model, self._api.operations)
            if self._authorize is not None:
                await self._authorize(f"cloudwatch:{operation}", scope, body)
            status, headers, payload = await asyncio.to_thread(
                self._call, wire, model, operation, body, fields, request_id
            )
        except ServiceError as error:
            status, headers, payload = self.encode_error(wire, error, request_id, model)
        except Exception:  # never a traceback on the wire; the log keeps it
            log.exception("internal error in a CloudWatch request")
            failure = InternalServiceError("An internal error occurred; see the server log.")
            status, headers, payload = self.encode_error(wire, failure, request_id, model)
        await send_response(send, status, payload, headers)
        return status

    @staticmethod
    def _operation(
        wire: Wire, scope: Scope, body: bytes, model: CloudWatchModel, served: tuple[str, ...]
    ) -> tuple[str, list[tuple[str, str]]]:
        fields: list[tuple[str, str]] = []
        if wire == "query":
            # Read once: what the auth middleware authorised, when it read the form.
            operation, fields = scope.get(QUERY_FORM_KEY) or parse_form(body)
        elif wire == "json":
            target = (header(scope, b"x-amz-target") or b"").decode("latin-1")
            operation = target[len(_TARGET) :]
        else:
            path: str = scope["path"]
            operation = path[len(_OPERATION_PATH) :] if path.startswith(_OPERATION_PATH) else ""
        if operation in served and operation in OPERATIONS:
            return operation, fields
        shown = operation[:100] or "(none)"
        listed = ", ".join(served)
        if operation in model.all_operations:
            message = (
                f"polyhost serves CloudWatch's {listed} (on the metrics it records), not {shown}."
            )
        else:
            message = f"Unknown CloudWatch operation {shown}: polyhost serves {listed}."
        raise (InvalidAction if wire == "query" else UnknownOperationException)(message)

    def _call(
        self,
        wire: Wire,
        model: CloudWatchModel,
        operation: str,
        body: bytes,
        fields: list[tuple[str, str]],
        request_id: str,
    ) -> tuple[int, Headers, bytes]:
        params: Any
        if wire == "query":
            params = check_input(model, operation, form_tree(model, operation, fields), True)
        elif wire == "json":
            params = check_input(model, operation, _decode_json(body), False)
        else:
            params = check_input(model, operation, decode_cbor(body), False)
        answer = self._api.call(operation, params)
        rid = (b"x-amzn-requestid", request_id.encode())
        if wire == "query":
            return (
                200,
                [(b"content-type", XML_TYPE), rid],
                xml_answer(model, operation, answer, request_id)
                if model.has_output(operation)
                else _empty_xml_answer(operation, request_id),
            )
        if wire == "json":
            payload = json.dumps(answer, default=_json_default, separators=(",", ":")).encode()
            return 200, [(b"content-type", JSON_TYPE), rid], payload
        return 200, [(b"content-type", CBOR_TYPE), PROTOCOL_HEADER, rid], encode_cbor(answer)

    @staticmethod
    def encode_error(
        wire: Wire, error: ServiceError, request_id: str, model: CloudWatchModel | None
    ) -> tuple[int, Headers, bytes]:
        headers: Headers = [(b"x-amzn-requestid", request_id.encode()), *error.headers()]
        if wire == "query":
            return (
                error.status,
                [(b"content-type", XML_TYPE), *headers],
                xml_error(error, request_id),
            )
        shape = model.error_shapes.get(error.code) if model is not None else None
        fault = "Sender" if error.status < 500 else "Receiver"
        headers.append((b"x-amzn-query-error", f"{error.code};{fault}".encode()))
        document = {
            "__type": f"{SMITHY_NAMESPACE}#{shape}" if shape else error.code,
            "message": error.message,
        }
        if wire == "json":
            headers.append((b"content-type", JSON_TYPE))
            return error.status, headers, json.dumps(document).encode()
        headers += [(b"content-type", CBOR_TYPE), PROTOCOL_HEADER]
        return error.status, headers, encode_cbor(document)


def _empty_xml_answer(operation: str, request_id: str) -> bytes:
    """CloudWatch's query answer to an operation without output: the request id alone."""
    return (
        f'<{operation}Response xmlns="{XML_NAMESPACE}"><ResponseMetadata><RequestId>'
        f"{request_id}</RequestId></ResponseMetadata></{operation}Response>"
    ).encode()


def _decode_json(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as error:
        raise SerializationException(f"The request body is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise SerializationException(
            f"The request body must be a JSON object, not {type(value).__name__}."
        )
    return value
