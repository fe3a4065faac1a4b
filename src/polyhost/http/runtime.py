"""REST runtime adapter: `POST /endpoints/{EndpointName}/invocations` (InvokeEndpoint).

Reads the headers SageMaker's runtime defines, reads the body up to the 6 MiB limit without
buffering more, and writes the router's answer or error in the rest-json shape botocore
expects: `x-amzn-ErrorType` header plus a JSON body with `message` (and ModelError's fields).
"""

from __future__ import annotations

import json
import logging

from polyhost.errors import InternalFailure, InvokeValidationError, RuntimeServiceError
from polyhost.http.io import BodyTooLarge, read_body, send_response
from polyhost.http.request_ids import next_request_id
from polyhost.http.types import Receive, Scope, Send
from polyhost.router.router import InvokeRequest, Router

log = logging.getLogger("polyhost.runtime")

_MAX_CUSTOM_ATTRIBUTES = 1024


def _decode_name(value: bytes, header: str) -> str:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise InvokeValidationError(f"Header {header} must be ASCII.") from None


class RuntimeAdapter:
    def __init__(self, router: Router, max_body_bytes: int = 6 * 1024 * 1024) -> None:
        self._router = router
        self._max_body = max_body_bytes

    async def handle(self, scope: Scope, receive: Receive, send: Send, endpoint_name: str) -> int:
        request_id = next_request_id()
        try:
            request = await self._request(scope, receive)
            result = await self._router.invoke(endpoint_name, request)
        except RuntimeServiceError as error:
            await self._send_error(send, error, request_id)
            return error.status
        except Exception:
            log.exception("internal error invoking %s", endpoint_name)
            failure = InternalFailure("An internal error occurred; see the server log.")
            await self._send_error(send, failure, request_id)
            return failure.status
        headers = [
            (b"content-type", result.content_type),
            (b"x-amzn-invoked-production-variant", result.variant.encode()),
            (b"x-amzn-requestid", request_id),
        ]
        if result.custom_attributes is not None:
            headers.append((b"x-amzn-sagemaker-custom-attributes", result.custom_attributes))
        await send_response(send, 200, result.body, headers)
        return 200

    async def _request(self, scope: Scope, receive: Receive) -> InvokeRequest:
        content_type = accept = attributes = inference_id = None
        variant = container = model = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"accept":
                accept = value
            elif name.startswith(b"x-amzn-sagemaker-"):
                suffix = name[17:]
                if suffix == b"custom-attributes":
                    if len(value) > _MAX_CUSTOM_ATTRIBUTES or not value.isascii():
                        raise InvokeValidationError(
                            "CustomAttributes must be at most 1024 visible US-ASCII characters."
                        )
                    attributes = value
                elif suffix == b"target-container-hostname":
                    container = _decode_name(value, "X-Amzn-SageMaker-Target-Container-Hostname")
                elif suffix == b"target-variant":
                    variant = _decode_name(value, "X-Amzn-SageMaker-Target-Variant")
                elif suffix == b"target-model":
                    model = _decode_name(value, "X-Amzn-SageMaker-Target-Model")
                elif suffix == b"inference-id":
                    inference_id = value
        try:
            body = await read_body(scope, receive, self._max_body)
        except BodyTooLarge:
            raise InvokeValidationError(
                f"Request body is larger than {self._max_body} bytes (6 MB), the most "
                "InvokeEndpoint accepts. Send a smaller payload."
            ) from None
        return InvokeRequest(
            body=body,
            content_type=content_type,
            accept=accept,
            custom_attributes=attributes,
            target_variant=variant,
            target_container=container,
            target_model=model,
            inference_id=inference_id,
        )

    @staticmethod
    async def _send_error(send: Send, error: RuntimeServiceError, request_id: bytes) -> None:
        payload: dict[str, object] = {"message": error.message, **error.body_fields()}
        body = json.dumps(payload).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"x-amzn-errortype", error.code.encode()),
            (b"x-amzn-requestid", request_id),
        ]
        await send_response(send, error.status, body, headers)
