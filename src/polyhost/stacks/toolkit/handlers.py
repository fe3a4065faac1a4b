"""The SageMaker inference-toolkit handler contract as a `ModelService`.

A stack supplies its default `model_fn`, `input_fn`, `predict_fn` and `output_fn`; the user's
script may replace any of them, or replace the last three with one `transform_fn` (defining both
is an error at load, as in SageMaker). As in the newer inference toolkit, the script may also
define `pre_model_fn(model_dir)` (run before `model_fn`) and `model_warmup_fn(model_dir, model)`
(run after it, before the container reports healthy). Every handler may take an extra trailing
`context` argument (a `Context`, shaped like SageMaker's).

Per request:
- the body reaches `input_fn` as `str` for application/json and text/csv, as bytes otherwise;
- a missing Content-Type means application/json; a missing or `*/*` Accept means
  SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT (default application/json);
- `output_fn`/`transform_fn` may return bytes, str, a `(body, content_type)` tuple, or another
  value (encoded as the Accept type); the answer's Content-Type is the tuple's, else what the
  handler set on the context, else the Accept type.
- a `predict_fn`, `output_fn` or `transform_fn` that returns an iterator (a generator of
  tokens) is streamed, one chunk per item (`streaming.py`): with the stack's own output_fn,
  each item of a predict_fn's iterator is encoded on its own;
- an exception from a handler answers 500 with its message (the traceback goes to the log only);
  an exception with an int `status_code` (SageMaker's `BaseInferenceToolkitError` shape) answers
  that status with its `message`.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polyhost.stacks.toolkit import codecs
from polyhost.stacks.toolkit.context import Context
from polyhost.stacks.toolkit.environment import default_accept, model_dir
from polyhost.stacks.toolkit.server import (
    InvocationError,
    InvocationRequest,
    InvocationResponse,
)
from polyhost.stacks.toolkit.streaming import encoded, is_stream
from polyhost.stacks.toolkit.user_module import call_handler, handler, load_user_module

log = logging.getLogger("polyhost.stack.handlers")

Handler = Callable[..., Any]

TRANSFORM_CONFLICT = (
    "Cannot use transform_fn implementation in conjunction with input_fn, predict_fn, and/or "
    "output_fn implementation"
)


# (model, request, accept after defaulting) -> the answer, or None to take the handler chain.
FastPath = Callable[[Any, InvocationRequest, str], "InvocationResponse | None"]


@dataclass(frozen=True)
class DefaultHandlers:
    """A stack's own handlers, used wherever the user's script defines none.

    `fast_path`, when given, answers the requests it recognises in one function instead of the
    three handlers (no context, no handler calls): it is used only when the script replaces
    none of input_fn, predict_fn, output_fn and transform_fn, and must answer exactly what the
    chain would (returning None for anything it does not take, and raising only what the
    chain would raise from the same model call).
    """

    model_fn: Handler
    input_fn: Handler
    predict_fn: Handler
    output_fn: Handler
    fast_path: FastPath | None = None


class HandlerError(Exception):
    """The user script breaks the handler contract; raised at load, so the container exits."""


def _user_error_status(error: Exception) -> tuple[int, str] | None:
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and 400 <= status <= 599:
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        return status, str(message)
    return None


class HandlerService:
    """Loads the model through `model_fn` and runs each request through the handler chain."""

    def __init__(
        self,
        defaults: DefaultHandlers,
        *,
        server_name: str = "polyhost",
        environ: Mapping[str, str] | None = None,
        folder: Path | None = None,
    ) -> None:
        self._defaults = defaults
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._server_name = server_name
        self._given_folder = folder is not None
        self.model_dir: Path = folder if folder is not None else model_dir(self._environ)
        self.default_accept = default_accept(self._environ)
        self.model: Any = None
        self.input_fn: Handler = defaults.input_fn
        self.predict_fn: Handler = defaults.predict_fn
        self.output_fn: Handler = defaults.output_fn
        self.transform_fn: Handler | None = None
        self.fast_path: FastPath | None = None

    def for_model(self, folder: Path) -> HandlerService:
        """A service of the same stack for the model in `folder`: one of the many a multi-model
        container loads (`multi_model`), each with its own handlers from its own script."""
        return HandlerService(
            self._defaults, server_name=self._server_name, environ=self._environ, folder=folder
        )

    def context(self, headers: Mapping[str, str] | None = None) -> Context:
        return Context(str(self.model_dir), headers, server_name=self._server_name)

    def load(self) -> None:
        if not self.model_dir.is_dir():
            if self._given_folder:
                raise HandlerError(f"model directory {self.model_dir} does not exist")
            if self._environ.get("SM_MODEL_DIR"):
                raise HandlerError(
                    f"model directory {self.model_dir} does not exist (set SM_MODEL_DIR to the "
                    "folder the model archive was extracted to)"
                )
            # No ModelDataUrl: SageMaker still gives the container an empty model dir, and a
            # script from SAGEMAKER_SUBMIT_DIRECTORY (a pipeline's preprocessing step) may need
            # no model files at all.
            self.model_dir = Path(tempfile.mkdtemp(prefix="polyhost-empty-model-"))
            log.warning("no model directory; serving with an empty one at %s", self.model_dir)
        module = load_user_module(self.model_dir, self._environ)
        transform_fn = handler(module, "transform_fn")
        user_input, user_predict, user_output = (
            handler(module, name) for name in ("input_fn", "predict_fn", "output_fn")
        )
        if transform_fn and (user_input or user_predict or user_output):
            raise HandlerError(TRANSFORM_CONFLICT)
        self.transform_fn = transform_fn
        self.input_fn = user_input or self._defaults.input_fn
        self.predict_fn = user_predict or self._defaults.predict_fn
        self.output_fn = user_output or self._defaults.output_fn
        if not (transform_fn or user_input or user_predict or user_output):
            self.fast_path = self._defaults.fast_path
        context = self.context()
        pre_model_fn = handler(module, "pre_model_fn")
        if pre_model_fn is not None:
            call_handler(pre_model_fn, str(self.model_dir), context=context)
        model_fn = handler(module, "model_fn") or self._defaults.model_fn
        self.model = call_handler(model_fn, str(self.model_dir), context=context)
        warmup_fn = handler(module, "model_warmup_fn")
        if warmup_fn is not None:
            call_handler(warmup_fn, str(self.model_dir), self.model, context=context)
        log.info("model loaded from %s", self.model_dir)

    def invoke(self, request: InvocationRequest) -> InvocationResponse:
        content_type = request.content_type or codecs.JSON
        accept = request.accept.strip() if request.accept else ""
        if not accept or accept == codecs.ANY:
            accept = self.default_accept
        if self.fast_path is not None:
            try:
                fast = self.fast_path(self.model, request, accept)
            except InvocationError:
                raise
            except Exception as error:
                status = _user_error_status(error)
                if status is None:
                    raise
                raise InvocationError(*status) from error
            if fast is not None:
                return fast
        body: bytes | str = request.body
        if codecs.media_type(content_type) in codecs.UTF8_TYPES:
            try:
                body = request.body.decode("utf-8")
            except UnicodeDecodeError as error:
                raise InvocationError(
                    400, f"The {content_type} body is not UTF-8: {error}"
                ) from None
        context = self.context(request.headers)
        try:
            result = self._run(body, content_type, accept, context)
        except InvocationError:
            raise
        except Exception as error:
            status = _user_error_status(error)
            if status is None:
                raise
            raise InvocationError(*status) from error
        return self._response(result, accept, context)

    def _run(self, body: bytes | str, content_type: str, accept: str, context: Context) -> Any:
        if self.transform_fn is not None:
            return call_handler(
                self.transform_fn, self.model, body, content_type, accept, context=context
            )
        data = call_handler(self.input_fn, body, content_type, context=context)
        prediction = call_handler(self.predict_fn, data, self.model, context=context)
        if is_stream(prediction) and self.output_fn is self._defaults.output_fn:
            output_fn = self.output_fn  # the stack's own encodes one item at a time
            return (call_handler(output_fn, item, accept, context=context) for item in prediction)
        return call_handler(self.output_fn, prediction, accept, context=context)

    def _response(self, result: Any, accept: str, context: Context) -> InvocationResponse:
        if is_stream(result) or (
            isinstance(result, tuple) and len(result) == 2 and is_stream(result[0])
        ):
            return self._streamed(result, accept, context)
        headers = context.get_response_headers(0)
        content_type = headers.get("content-type")
        if isinstance(result, tuple) and len(result) == 2:
            result, content_type = result
        if isinstance(result, (bytes, bytearray, memoryview)):
            payload = bytes(result)
        elif isinstance(result, str):
            payload = result.encode("utf-8")
        else:  # an un-serialised value: encode it as the client asked
            chosen = codecs.choose_accept(accept, self.default_accept)
            payload = codecs.encode(result, chosen)
            content_type = content_type or chosen
        status = context.request_processor[0].status or 200
        return InvocationResponse(
            body=payload,
            content_type=str(content_type or _single_type(accept, self.default_accept)),
            status=status,
            custom_attributes=headers.get("x-amzn-sagemaker-custom-attributes"),
        )

    def _streamed(self, result: Any, accept: str, context: Context) -> InvocationResponse:
        """An iterator's answer: its first item now (on the worker thread, so an error in it
        is an ordinary error answer), the rest streamed, each item encoded as `_response`
        encodes a whole answer. The first item's type is the answer's, unless the handler
        set one on the context, or returned it beside the iterator."""
        declared = None
        if isinstance(result, tuple):
            result, declared = result

        def encode(item: Any) -> tuple[bytes, str | None]:
            content_type = None
            if isinstance(item, tuple) and len(item) == 2:
                item, content_type = item
            if isinstance(item, (bytes, bytearray, memoryview)):
                return bytes(item), content_type
            if isinstance(item, str):
                return item.encode("utf-8"), content_type
            chosen = codecs.choose_accept(accept, self.default_accept)
            return codecs.encode(item, chosen), content_type or chosen

        first, first_type, rest = encoded(result, encode)
        headers = context.get_response_headers(0)
        content_type = headers.get("content-type") or declared or first_type
        return InvocationResponse(
            body=first,
            content_type=str(content_type or _single_type(accept, self.default_accept)),
            status=context.request_processor[0].status or 200,
            custom_attributes=headers.get("x-amzn-sagemaker-custom-attributes"),
            stream=rest,
        )


def _single_type(accept: str, default: str) -> str:
    """A Content-Type for a handler's answer from the Accept it was given.

    SageMaker echoes the Accept header verbatim; with a list (`a, b;q=0.5`) that is no valid
    Content-Type, so the first concrete type of the list is used instead.
    """
    if "," not in accept and "*" not in accept:
        return accept
    concrete = [media for media in codecs.parse_accept(accept) if "*" not in media]
    return concrete[0] if concrete else default


def default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    """Encode as the first type of Accept the codecs know (406 when none)."""
    chosen = codecs.choose_accept(accept, default_accept())
    return codecs.encode(prediction, chosen), chosen


def default_input_fn(body: bytes | str, content_type: str) -> Any:
    """Decode with the codecs: 415 for other types, 400 for a body invalid for its type."""
    return codecs.decode(body, content_type)
