"""`code/inference.py` handlers, called the way SageMaker's TensorFlow container calls them.

The script defines either `handler(data, context)` or the pair `input_handler(data, context)` +
`output_handler(response, context)` (with `handler` present the pair is ignored; with neither,
the container refuses to start, as SageMaker's does).

- `data` is the request body as a readable stream (`data.read()` gives bytes).
- `context` is SageMaker's `Context` namedtuple (below). `context.rest_uri` points at this
  stack's internal TensorFlow Serving REST API, so `requests.post(context.rest_uri, data=...)`
  works unchanged. There is no gRPC server: `grpc_port` and `channel` are None.
  `request_content_type` and `accept_header` are the request's headers as sent, defaulting to
  `application/json` when missing (an Accept of `*/*` too, so that handlers returning
  `context.accept_header` as their content type label the answer sensibly).
- `handler` returns `(body, content_type)`; a bare body is taken with the Accept type.
- For the pair, the stack posts what `input_handler` returned to `context.rest_uri` with
  `requests` (exactly SageMaker's code path) and hands the `requests.Response` to
  `output_handler`.
- An exception in a handler answers 500 `{"error": "<message>"}`, as SageMaker's does.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

from polyhost.stacks.toolkit.user_module import call_handler, handler


class Context(NamedTuple):
    """SageMaker's TensorFlow handler context, field for field."""

    model_name: str | None
    model_version: str | None
    method: str | None
    rest_uri: str
    grpc_port: str | None
    channel: Any
    custom_attributes: str | None
    request_content_type: str
    accept_header: str
    content_length: int | None


class HandlerError(Exception):
    """The script does not define a usable handler; the message says what to add."""


Handler = Callable[[Any, Context], Any]


class _Poster:
    """`requests.post` through one keep-alive session per thread (requests' sessions are not
    meant to be shared across threads)."""

    def __init__(self) -> None:
        import requests  # TensorFlow depends on it; SageMaker's handlers import it too

        self._requests = requests
        self._local = threading.local()

    def post(self, uri: str, data: Any) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._requests.Session()
        return session.post(uri, data=data)


def make_handler(module: ModuleType) -> Handler:
    """The one callable serving a request: the script's `handler`, or the pair chained."""
    single = handler(module, "handler")
    if single is not None:
        return lambda data, context: call_handler(single, data, context=context)
    pre = handler(module, "input_handler")
    post = handler(module, "output_handler")
    if pre is None or post is None:
        raise HandlerError(
            "Handlers are not implemented correctly in user script: define handler(data, "
            "context), or both input_handler(data, context) and output_handler(response, "
            "context)"
        )
    poster = _Poster()

    def chained(data: Any, context: Context) -> Any:
        processed = call_handler(pre, data, context=context)
        response = poster.post(context.rest_uri, processed)
        return call_handler(post, response, context=context)

    return chained


def unpack_result(result: Any, accept: str) -> tuple[bytes, str]:
    """A handler's `(body, content_type)` (or bare body) as bytes and a content type."""
    content_type: Any = accept
    body = result
    if isinstance(result, tuple):
        if len(result) == 2:
            body, content_type = result
        elif len(result) == 1:
            body = result[0]
        else:
            raise TypeError(
                f"the handler returned a tuple of {len(result)} items; return (body, content_type)"
            )
    if isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body)
    elif isinstance(body, str):
        data = body.encode("utf-8")
    elif body is None:
        data = b""
    else:
        data = json.dumps(body).encode("utf-8")
        content_type = content_type or "application/json"
    return data, str(content_type or "application/json")
