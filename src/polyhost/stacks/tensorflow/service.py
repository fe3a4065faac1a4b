"""The TensorFlow stack's `ModelService`: what `/invocations` does, and what loading means.

`load()` (in the toolkit's background thread; `/ping` answers 503 meanwhile) finds the models,
imports the user script if there is one, imports TensorFlow, loads every version of every
model, and — only for a user script — starts the internal TensorFlow Serving REST API its
handlers post to. `invoke()` either runs the user's handler, or converts the body as
SageMaker's front end does and runs TensorFlow Serving's predict/classify/regress.

In a multi-model container (`SAGEMAKER_MULTI_MODEL=true`, `stacks.toolkit.multi_model`) each
loaded model is a service of its own (`for_model`): its own SavedModels, its own
`code/inference.py` and, for a handler, its own internal REST API, stopped when the model is
unloaded (`close`). TensorFlow itself is imported, and its thread pools set, once per process.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from polyhost.stacks.tensorflow.attributes import TfsAttributes, parse_attributes
from polyhost.stacks.tensorflow.config import StackConfig
from polyhost.stacks.tensorflow.errors import TfsError
from polyhost.stacks.tensorflow.handlers import (
    Context,
    Handler,
    make_handler,
    unpack_result,
)
from polyhost.stacks.tensorflow.layout import default_model_name, discover
from polyhost.stacks.tensorflow.payloads import JSON, decode_invocation, response_content_type
from polyhost.stacks.tensorflow.repository import ModelRepository
from polyhost.stacks.toolkit.server import (
    InvocationError,
    InvocationRequest,
    InvocationResponse,
)
from polyhost.stacks.toolkit.user_module import load_user_module

if TYPE_CHECKING:
    from polyhost.stacks.tensorflow.restapi import TfsRestServer
    from polyhost.stacks.tensorflow.savedmodel import SavedModel

log = logging.getLogger("polyhost.stack.tensorflow")


class TensorFlowService:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.repository: ModelRepository | None = None
        self.handler: Handler | None = None
        self.rest: TfsRestServer | None = None

    def for_model(self, folder: Path) -> TensorFlowService:
        """A service for the model in `folder`, one of the many a multi-model container loads:
        the same settings, another model directory (its own layout, script and REST API)."""
        return TensorFlowService(dataclasses.replace(self.config, model_dir=folder))

    def close(self) -> None:
        """Stop the handler's REST API: a model unloaded from a multi-model container must not
        keep a port and a thread (and through them its SavedModels) alive."""
        rest, self.rest = self.rest, None
        if rest is not None:
            rest.close()

    def load(self) -> None:
        started = time.monotonic()
        model_dir = self.config.model_dir
        sources = discover(model_dir)  # before the slow import: a bad layout fails fast
        default_name = default_model_name(sources, self.config.default_model_name)
        lib = model_dir / "code" / "lib"
        if lib.is_dir() and str(lib) not in sys.path:
            sys.path.insert(0, str(lib))  # SageMaker's place for vendored dependencies
        module = load_user_module(model_dir)
        handler = make_handler(module) if module is not None else None

        from polyhost.stacks.tensorflow import savedmodel  # imports TensorFlow

        savedmodel.configure(self.config)
        models: dict[str, dict[int, SavedModel]] = {}
        for source in sources:
            models[source.name] = {
                version: savedmodel.load(source.name, version, folder)
                for version, folder in sorted(source.versions.items())
            }
        self.repository = ModelRepository(models, default_name)
        if handler is not None:
            from polyhost.stacks.tensorflow.restapi import TfsRestServer, candidate_ports

            self.rest = TfsRestServer(
                self.repository, candidate_ports(self.config.safe_port_range)
            ).start()
            self.handler = handler
        log.info(
            "serving %s (default %s) in %.2fs%s",
            ", ".join(f"{name} v{sorted(v)}" for name, v in models.items()),
            default_name,
            time.monotonic() - started,
            "; code/inference.py handles requests" if handler is not None else "",
        )

    def invoke(self, request: InvocationRequest) -> InvocationResponse:
        assert self.repository is not None, "invoke() before load()"
        attributes = parse_attributes(request.custom_attributes)
        if self.handler is not None:
            return self._invoke_handler(self.handler, request, attributes)
        document = decode_invocation(request.body, request.content_type, dense=True)
        body = self.repository.handle(
            attributes.effective_method,
            document,
            attributes.model_name,
            attributes.model_version,
        )
        return InvocationResponse(body=body, content_type=response_content_type(request.accept))

    def _invoke_handler(
        self, handler: Handler, request: InvocationRequest, attributes: TfsAttributes
    ) -> InvocationResponse:
        assert self.rest is not None and self.repository is not None
        accept = request.accept if request.accept and request.accept != "*/*" else JSON
        context = Context(
            model_name=attributes.model_name,
            model_version=attributes.model_version,
            method=attributes.method,
            rest_uri=self.rest.uri(
                attributes.model_name or self.repository.default_name,
                attributes.model_version,
                attributes.effective_method,
            ),
            grpc_port=None,
            channel=None,
            custom_attributes=request.custom_attributes,
            request_content_type=(request.content_type or "").strip() or JSON,
            accept_header=accept,
            content_length=len(request.body),
        )
        try:
            result = handler(io.BytesIO(request.body), context)
            body, content_type = unpack_result(result, accept)
        except InvocationError:
            raise
        except Exception as error:  # the handler's failure, as SageMaker reports it
            log.exception("code/inference.py handler failed")
            raise TfsError(str(error) or type(error).__name__, 500) from None
        return InvocationResponse(body=body, content_type=content_type)
