"""How a `ServiceError` goes onto the wire, once per protocol.

- AWS JSON 1.1 (the control plane, and polyhost's own JSON routes): `{"__type", "message"}`
  with `x-amzn-ErrorType`, which botocore's JSON parser reads.
- rest-json (the runtime): the `x-amzn-ErrorType` header names the error and the body is
  `{"message", ...}` plus the error's extra members (ModelError's OriginalStatusCode...).

Every adapter answers errors through these two functions, so a code or status is never written
by hand anywhere else.
"""

from __future__ import annotations

import json

from polyhost.errors import InternalFailure, ServiceError

Headers = list[tuple[bytes, bytes]]
INTERNAL_MESSAGE = "An internal error occurred; see the server log."


def internal_failure() -> InternalFailure:
    """The one answer to an unexpected exception: no detail on the wire, the log has it."""
    return InternalFailure(INTERNAL_MESSAGE)


def aws_json_error(
    error: ServiceError, content_type: bytes = b"application/json"
) -> tuple[int, Headers, bytes]:
    """Status, headers and body of `error` in the AWS JSON shape."""
    body = json.dumps({"__type": error.code, "message": error.message}).encode()
    headers = [
        (b"content-type", content_type),
        (b"x-amzn-errortype", error.code.encode()),
        *error.headers(),
    ]
    return error.status, headers, body


def rest_json_error(error: ServiceError) -> tuple[int, Headers, bytes]:
    """Status, headers and body of `error` in the rest-json shape."""
    payload: dict[str, object] = {"message": error.message, **error.body_fields()}
    headers = [
        (b"content-type", b"application/json"),
        (b"x-amzn-errortype", error.code.encode()),
        *error.headers(),
    ]
    return error.status, headers, json.dumps(payload).encode()
