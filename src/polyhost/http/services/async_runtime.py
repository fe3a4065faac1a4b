"""REST runtime adapter of `POST /endpoints/{EndpointName}/async-invocations` (InvokeEndpointAsync).

Reads botocore's headers (the input is at X-Amzn-SageMaker-InputLocation; the body is empty),
checks them as botocore's model bounds them, commits the request to the durable queue
(`asyncinf/`) and answers 202 with its InferenceId and where its answer or failure will be
written. Nothing is invoked here: the worker runs the request later. The request is signed and
authorised by the auth middleware as `sagemaker:InvokeEndpointAsync` before it gets here.
Errors are in the runtime's rest-json shape.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable

from polyhost.asyncinf.queue import AsyncQueue, AsyncRequest, QueueFull
from polyhost.errors import InvokeValidationError, NoSuchRoute, ServiceError, ServiceUnavailable
from polyhost.http.errors import rest_json_error
from polyhost.http.io import BodyTooLarge, read_body, send_response
from polyhost.http.request_ids import next_request_id
from polyhost.http.types import Receive, Scope, Send
from polyhost.router.router import Router
from polyhost.settings import Settings

PREFIX = "/endpoints/"
SUFFIX = "/async-invocations"
_HEADER = b"x-amzn-sagemaker-"
MAX_TEXT = 1024  # ContentType, Accept, CustomAttributes: at most 1024 ASCII characters
DEFAULT_TTL_S = 21_600  # RequestTTLSeconds: SageMaker's default and largest, six hours
TTL_RANGE = (60, 21_600)
DEFAULT_TIMEOUT_S = 900  # InvocationTimeoutSeconds: SageMaker's default
TIMEOUT_RANGE = (1, 3_600)
_INFERENCE_ID = re.compile(r"\S[\x20-\x7e]{0,63}")
_INPUT = re.compile(r"(https|s3)://([^/]+)/?(.*)")
# Members of the operation polyhost does not honour: refused, never ignored.
_REFUSED = {
    b"s3outputpathextension": "S3OutputPathExtension",
    b"filename": "Filename",
    b"target-container-hostname": "TargetContainerHostname",
}


class AsyncInvocationsRoute:
    """The ASGI route; `notify` wakes the worker once a request is committed."""

    def __init__(
        self, queue: AsyncQueue, router: Router, settings: Settings, notify: Callable[[], None]
    ) -> None:
        self._queue = queue
        self._router = router
        self._account = settings.account_id
        self._notify = notify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        request_id = next_request_id()
        path: str = scope["path"]
        try:
            if not (path.startswith(PREFIX) and path.endswith(SUFFIX)) or len(path) <= len(
                PREFIX
            ) + len(SUFFIX):
                raise NoSuchRoute(f"No route for {scope['method']} {path[:200]}.")
            if scope["method"] != "POST":
                raise NoSuchRoute(f"No route for {scope['method']} {path[:200]}.")
            name = path[len(PREFIX) : -len(SUFFIX)]
            try:
                body = await read_body(scope, receive, 0)
            except BodyTooLarge:
                raise InvokeValidationError(
                    "InvokeEndpointAsync takes its input from InputLocation: send no body."
                ) from None
            del body
            accepted = await self._accept(name, scope["headers"])
        except ServiceError as error:
            status, headers, payload = rest_json_error(error)
            headers.append((b"x-amzn-requestid", request_id))
            await send_response(send, status, payload, headers)
            return status
        self._notify()
        headers = [
            (b"content-type", b"application/json"),
            (b"x-amzn-requestid", request_id),
            (b"x-amzn-sagemaker-outputlocation", accepted.output_location.encode()),
            (b"x-amzn-sagemaker-failurelocation", accepted.failure_location.encode()),
        ]
        payload = json.dumps({"InferenceId": accepted.inference_id}).encode()
        await send_response(send, 202, payload, headers)
        return 202

    async def _accept(self, name: str, headers: list[tuple[bytes, bytes]]) -> AsyncRequest:
        fields: dict[bytes, str] = {}
        for raw_name, raw_value in headers:
            lowered = raw_name.lower()
            if not lowered.startswith(_HEADER):
                continue
            suffix = lowered[len(_HEADER) :]
            if suffix in _REFUSED:
                raise InvokeValidationError(
                    f"{_REFUSED[suffix]} is not supported by this server's InvokeEndpointAsync."
                )
            try:
                value = raw_value.decode("ascii")
            except UnicodeDecodeError:
                header = raw_name.decode("latin-1")
                raise InvokeValidationError(f"Header {header} must be ASCII.") from None
            fields[suffix] = value
        for suffix, member in (
            (b"content-type", "ContentType"),
            (b"accept", "Accept"),
            (b"custom-attributes", "CustomAttributes"),
        ):
            if len(fields.get(suffix, "")) > MAX_TEXT:
                raise InvokeValidationError(f"{member} must be at most {MAX_TEXT} characters.")
        location = fields.get(b"inputlocation")
        if location is None:
            raise InvokeValidationError("InputLocation is required: the S3 URI of the input.")
        if len(location) > 1024 or not _INPUT.fullmatch(location):
            raise InvokeValidationError(
                "InputLocation must be an s3:// or https:// URI of at most 1024 characters."
            )
        inference_id = fields.get(b"inference-id")
        if inference_id is None:
            inference_id = str(uuid.uuid4())
        elif not _INFERENCE_ID.fullmatch(inference_id):
            raise InvokeValidationError(
                "InferenceId must be 1 to 64 printable characters, not starting with a space."
            )
        ttl = _integer(fields.get(b"requestttlseconds"), "RequestTTLSeconds", TTL_RANGE)
        timeout = _integer(
            fields.get(b"invocationtimeoutseconds"), "InvocationTimeoutSeconds", TIMEOUT_RANGE
        )
        route = self._router.route(name)
        if route is None:
            if self._router.is_restoring(name):
                raise ServiceUnavailable(
                    f"Endpoint {name} is being restored after a server restart. Retry shortly."
                )
            raise InvokeValidationError(
                f"Endpoint {name} of account {self._account} not found or not in service."
            )
        config = route.async_inference
        if config is None:
            raise InvokeValidationError(
                f"Endpoint {name} is not configured for asynchronous inference: give its "
                "endpoint configuration an AsyncInferenceConfig, or use InvokeEndpoint."
            )
        output = config.output_path.rstrip("/")
        failure = (config.failure_path or config.output_path).rstrip("/")
        now = time.time()
        request = AsyncRequest(
            endpoint=name,
            inference_id=inference_id,
            input_location=location,
            content_type=fields.get(b"content-type"),
            accept=fields.get(b"accept"),
            custom_attributes=fields.get(b"custom-attributes"),
            received=now,
            expires=now + (DEFAULT_TTL_S if ttl is None else ttl),
            timeout_s=float(DEFAULT_TIMEOUT_S if timeout is None else timeout),
            output_location=f"{output}/{inference_id}.out",
            failure_location=f"{failure}/{inference_id}-error.out",
        )
        try:
            # Committed before the 202 is sent: an accepted request survives a crash.
            return await asyncio.to_thread(self._queue.add, request)
        except QueueFull:
            raise ServiceUnavailable(
                f"Endpoint {name} already holds the most asynchronous requests this server "
                "queues per endpoint (--async-max-queued). Retry later."
            ) from None


def _integer(value: str | None, member: str, bounds: tuple[int, int]) -> int | None:
    if value is None:
        return None
    low, high = bounds
    if not value.isdigit() or not low <= int(value) <= high:
        raise InvokeValidationError(f"{member} must be an integer from {low} to {high}.")
    return int(value)
