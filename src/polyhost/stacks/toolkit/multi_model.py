"""SageMaker's multi-model API in a built-in stack: many models in one process, each on its own.

With `SAGEMAKER_MULTI_MODEL=true` a stack serves, instead of one model loaded at start:

    GET    /ping                      200 at once (there is nothing to load before the first call)
    POST   /models                    {"model_name": NAME, "url": FOLDER}: load the model in
                                      FOLDER. 200; 409 already loaded (or loading); 507 when
                                      the load would pass the memory budget; 404 no such
                                      folder; 400 a bad request; 500 the model's own failure
    GET    /models                    {"models": [{"modelName", "modelUrl"}], "nextPageToken"}
                                      (`?limit=N&next_page_token=T`, at most 1,000 a page)
    GET    /models/NAME               {"modelName", "modelUrl", "memoryBytes", "loadSeconds"}
    DELETE /models/NAME               200; 404 not loaded
    POST   /models/NAME/invoke        the model's handler chain, exactly as /invocations runs it

NAME is one path segment, percent-encoded when it holds `/` or other reserved characters.

Each model is a `ModelService` of the stack (`for_model(folder)`), so each has the handlers of
its own `code/inference.py`. Loads run one at a time on a thread of their own: `/ping` and the
other models' invocations go on meanwhile, and one load's memory is measured alone, as the
growth of the process's resident memory across it.

The memory budget is the container's memory limit (`SAGEMAKER_MAX_MEMORY_BYTES`, which polyhost
sets from the image's limit) and, when the model's environment gives one, a budget for the
models alone (`POLYHOST_MULTI_MODEL_MEMORY_BYTES`). The process is counted as what it held when
no model was loaded plus what each loaded model added: resident memory that a freed model
leaves behind (allocators keep some) would otherwise count against the models loaded later,
and a load that imports code (the framework's first import) counts what it adds beyond the
model's size on disk to the process.
A load that would pass a budget answers 507 before loading when the model's files alone would
(a model takes at least about its size on disk), else after loading, the model dropped again:
the platform then unloads the least recently used models and asks once more. A container is
never killed by its limit for a load it could refuse.

A load cannot be interrupted (a model's own `model_fn` runs in it), and loads run one at a
time: one that hangs would keep every later load waiting for good. So once a load has run
longer than its bound (`POLYHOST_MULTI_MODEL_LOAD_TIMEOUT_S`, 360 s by default, as SageMaker's
model-loading bound) `/ping` answers 503 naming the model: the platform's health checks then
restart the container, which is the only way to end such a load.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import gc
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, unquote

from polyhost.stacks.toolkit.server import (
    InvocationError,
    InvocationRequest,
    InvocationResponse,
    ModelService,
    _Workers,
    invoke_service,
    public_message,
    send_reply,
)

log = logging.getLogger("polyhost.stack.multi_model")

MULTI_MODEL_ENV = "SAGEMAKER_MULTI_MODEL"
MAX_MEMORY_ENV = "SAGEMAKER_MAX_MEMORY_BYTES"
MODELS_MEMORY_ENV = "POLYHOST_MULTI_MODEL_MEMORY_BYTES"
LOAD_TIMEOUT_ENV = "POLYHOST_MULTI_MODEL_LOAD_TIMEOUT_S"
DEFAULT_LOAD_TIMEOUT_S = 360.0
MAX_NAME_CHARS = 1024
MAX_URL_CHARS = 4096
MAX_CONTROL_BODY = 64 * 1024  # a POST /models body
MAX_INVOKE_BODY = 6 * 1024 * 1024 + 1024  # SageMaker's 6 MiB, and a little room
PAGE_DEFAULT, PAGE_MAX = 100, 1000
MAX_SIZED_FILES = 100_000  # files counted for a folder's size before the count stops


class ManyModels(Protocol):
    """A stack service that can make a service per model (`HandlerService.for_model`)."""

    def for_model(self, folder: Path) -> ModelService: ...


@dataclass
class LoadedModel:
    name: str
    url: str
    service: ModelService
    memory_bytes: int
    load_seconds: float

    def describe(self) -> dict[str, Any]:
        return {
            "modelName": self.name,
            "modelUrl": self.url,
            "memoryBytes": self.memory_bytes,
            "loadSeconds": round(self.load_seconds, 6),
        }


class LoadRefused(Exception):
    """A load answered with `status` (404, 409, 507, 500) and `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def resident_bytes() -> int:
    """This process's resident memory now (Linux /proc; 0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _trim() -> None:
    """Give freed heap back to the system where glibc can (best effort)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _close(service: ModelService) -> None:
    """Release what a model's service holds beyond memory (a stack's `close()`, when it has
    one: the TensorFlow stack's REST API for handlers), a failure only logged: an unload must
    not fail because a model's resources were already gone."""
    close = getattr(service, "close", None)
    if callable(close):
        try:
            close()
        except Exception as error:  # logged: the model is dropped regardless
            log.warning("closing a model's service failed: %s", public_message(error))


def folder_bytes(folder: Path) -> int:
    """The size of the files below `folder` (the first MAX_SIZED_FILES of them)."""
    total = 0
    counted = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
            counted += 1
            if counted >= MAX_SIZED_FILES:
                return total
    return total


def _budget(name: str, environ: dict[str, str]) -> int | None:
    text = environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        log.warning("%s=%r is not a number of bytes; ignored", name, text)
        return None
    return value if value > 0 else None


def _seconds(name: str, environ: dict[str, str], default: float) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        log.warning("%s=%r is not a positive number of seconds; %g used", name, text, default)
        return default
    return value


class ModelTable:
    """The loaded models and the memory they are counted for; loads run on one thread."""

    def __init__(
        self,
        make: Callable[[Path], ModelService],
        *,
        max_memory: int | None = None,
        models_memory: int | None = None,
        measure: Callable[[], int] = resident_bytes,
        load_timeout_s: float = DEFAULT_LOAD_TIMEOUT_S,
    ) -> None:
        self._make = make
        self.load_timeout_s = load_timeout_s
        self._current: tuple[str, float] | None = None  # the load running: (name, started)
        self._max_memory = max_memory
        self._models_memory = models_memory
        self._measure = measure
        self._lock = threading.Lock()
        self._models: dict[str, LoadedModel] = {}
        self._loading: set[str] = set()
        self._baseline = measure()
        self._loader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="load")

    def get(self, name: str) -> LoadedModel | None:
        return self._models.get(name)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def used(self) -> int:
        """What the process is counted for: its model-free memory plus the models'."""
        with self._lock:
            return self._baseline + sum(m.memory_bytes for m in self._models.values())

    def submit_load(self, name: str, url: str) -> concurrent.futures.Future[LoadedModel]:
        with self._lock:
            if name in self._models or name in self._loading:
                raise LoadRefused(409, f"Model {name} is already loaded.")
            self._loading.add(name)
        try:
            return self._loader.submit(self._load, name, url)
        except RuntimeError:
            with self._lock:
                self._loading.discard(name)
            raise LoadRefused(503, "The container is shutting down.") from None

    def _fits(self, extra: int) -> str | None:
        """None when `extra` more bytes fit both budgets, else why not (call under `_lock`)."""
        models = sum(m.memory_bytes for m in self._models.values())
        if self._max_memory is not None and self._baseline + models + extra > self._max_memory:
            return (
                f"the container would use {self._baseline + models + extra} bytes, more than "
                f"its memory limit of {self._max_memory} bytes"
            )
        if self._models_memory is not None and models + extra > self._models_memory:
            return (
                f"its models would use {models + extra} bytes, more than their budget of "
                f"{self._models_memory} bytes"
            )
        return None

    def _load(self, name: str, url: str) -> LoadedModel:
        self._current = (name, time.monotonic())
        try:
            return self._load_now(name, url)
        finally:
            self._current = None
            with self._lock:
                self._loading.discard(name)

    def overdue(self) -> str | None:
        """Why the container is broken when the load running has passed its bound, else None."""
        current = self._current
        if current is None:
            return None
        name, started = current
        seconds = time.monotonic() - started
        if seconds <= self.load_timeout_s:
            return None
        return (
            f"Model {name} has been loading for {seconds:.0f} seconds, more than the "
            f"{self.load_timeout_s:g} seconds a load may take; the container must be restarted."
        )

    def _load_now(self, name: str, url: str) -> LoadedModel:
        folder = Path(url)
        if not folder.is_dir():
            raise LoadRefused(404, f"Model folder {url} does not exist or is not a folder.")
        on_disk = folder_bytes(folder)
        with self._lock:
            if not self._models:
                self._baseline = self._measure()
            if self._models and (why := self._fits(on_disk)) is not None:
                raise LoadRefused(507, f"Not enough memory to load model {name}: {why}.")
        started = time.monotonic()
        modules = len(sys.modules)
        before = self._measure()
        service: ModelService | None = None
        try:
            service = self._make(folder)
            service.load()
        except BaseException as error:  # also SystemExit from a user script
            if service is not None:
                _close(service)
            del service
            gc.collect()
            _trim()
            log.warning("model %s failed to load: %s", name, public_message(error))
            raise LoadRefused(
                500, f"Model {name} failed to load: {public_message(error)}"
            ) from None
        seconds = time.monotonic() - started
        grown = max(self._measure() - before, 0)
        if len(sys.modules) > modules and grown > on_disk:
            # The load imported code (the framework, on the first load): what it added beyond
            # the model's own size is the process's from now on, not this model's.
            with self._lock:
                self._baseline += grown - on_disk
            grown = on_disk
        with self._lock:
            why = self._fits(grown) if self._models else None
            if why is None:
                loaded = LoadedModel(name, url, service, grown, seconds)
                self._models[name] = loaded
        if why is not None:
            _close(service)
            del service
            gc.collect()
            _trim()
            raise LoadRefused(507, f"Not enough memory to keep model {name} loaded: {why}.")
        log.info("model %s loaded from %s in %.3f s (%d bytes)", name, url, seconds, grown)
        return loaded

    def unload(self, name: str) -> bool:
        with self._lock:
            loaded = self._models.pop(name, None)
        if loaded is None:
            return False
        _close(loaded.service)
        del loaded
        gc.collect()
        _trim()
        log.info("model %s unloaded", name)
        return True

    def close(self) -> None:
        self._loader.shutdown(wait=False, cancel_futures=True)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _message(text: str) -> bytes:
    return _json({"message": text})


def _control_free(text: str) -> bool:
    return not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


class MultiModelApp:
    """Raw ASGI app of the multi-model API (see the module docstring)."""

    def __init__(self, table: ModelTable, threads: int = 1) -> None:
        self.table = table
        # The one-model app's workers (a queue and a loop callback, no executor futures):
        # a warm invocation here costs what it costs on a single-model container.
        self._workers: _Workers[tuple[ModelService, InvocationRequest]] = _Workers(
            _invoke_pair, threads
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        raw = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        segments = raw.split(b"?", 1)[0].decode("latin-1").split("/")[1:]
        try:
            status, body = await self._route(method, segments, scope, receive)
        except LoadRefused as refused:
            status, body = refused.status, _message(refused.message)
        if isinstance(body, InvocationResponse):
            extra = []
            if body.custom_attributes is not None:
                extra.append(
                    (b"x-amzn-sagemaker-custom-attributes", body.custom_attributes.encode())
                )
            await send_reply(send, body.status, body.body, body.content_type, extra)
            return
        await send_reply(send, status, body, "application/json")

    async def _route(
        self, method: str, segments: list[str], scope: dict[str, Any], receive: Any
    ) -> tuple[int, bytes | InvocationResponse]:
        if segments == ["ping"]:
            overdue = self.table.overdue()
            return (200, b"") if overdue is None else (503, _message(overdue))
        if segments == ["invocations"]:
            return 400, _message(
                "This container serves multiple models: invoke one with POST "
                "/models/{name}/invoke (InvokeEndpoint with TargetModel)."
            )
        if not segments or segments[0] != "models":
            return 404, _message("not found")
        if segments == ["models"]:
            if method == "POST":
                return await self._load(await _body(receive, MAX_CONTROL_BODY))
            if method == "GET":
                return self._list(scope.get("query_string", b""))
            return 405, _message("use GET or POST /models")
        name = unquote(segments[1], errors="replace") if len(segments) > 1 else ""
        if not name or len(name) > MAX_NAME_CHARS or not _control_free(name):
            return 400, _message("A model name is 1 to 1024 characters, no control characters.")
        if len(segments) == 2:
            if method == "GET":
                loaded = self.table.get(name)
                if loaded is None:
                    return 404, _message(f"Model {name} is not loaded.")
                return 200, _json(loaded.describe())
            if method == "DELETE":
                if not await asyncio.get_running_loop().run_in_executor(
                    None, self.table.unload, name
                ):
                    return 404, _message(f"Model {name} is not loaded.")
                return 200, _json({"status": f"Model {name} unloaded."})
            return 405, _message("use GET or DELETE /models/{name}")
        if segments[2:] == ["invoke"]:
            if method != "POST":
                return 405, _message("use POST /models/{name}/invoke")
            return await self._invoke(name, scope, await _body(receive, MAX_INVOKE_BODY))
        return 404, _message("not found")

    async def _load(self, body: bytes | None) -> tuple[int, bytes]:
        if body is None:
            return 413, _message(f"A load request is at most {MAX_CONTROL_BODY} bytes.")
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return 400, _message('The body must be JSON: {"model_name": ..., "url": ...}.')
        name = document.get("model_name") if isinstance(document, dict) else None
        url = document.get("url") if isinstance(document, dict) else None
        if not (
            isinstance(name, str)
            and 0 < len(name) <= MAX_NAME_CHARS
            and _control_free(name)
            and isinstance(url, str)
            and 0 < len(url) <= MAX_URL_CHARS
            and _control_free(url)
        ):
            return 400, _message(
                "model_name (1 to 1024 characters) and url (the model's folder) are required, "
                "without control characters."
            )
        future = self.table.submit_load(name, url)
        loaded = await asyncio.wrap_future(future)
        return 200, _json({"status": f"Model {name} loaded.", **loaded.describe()})

    def _list(self, query: bytes) -> tuple[int, bytes]:
        params = parse_qs(query.decode("latin-1")[:2048])
        try:
            limit = int((params.get("limit") or [str(PAGE_DEFAULT)])[0])
        except ValueError:
            return 400, _message("limit must be a number.")
        limit = max(1, min(limit, PAGE_MAX))
        after = (params.get("next_page_token") or [""])[0]
        names = [n for n in self.table.names() if n > after]
        page = names[:limit]
        models = []
        for name in page:
            loaded = self.table.get(name)
            if loaded is not None:
                models.append({"modelName": name, "modelUrl": loaded.url})
        answer: dict[str, Any] = {"models": models}
        if len(names) > limit:
            answer["nextPageToken"] = page[-1]
        return 200, _json(answer)

    async def _invoke(
        self, name: str, scope: dict[str, Any], body: bytes | None
    ) -> tuple[int, bytes | InvocationResponse]:
        if body is None:
            return 413, _message(f"A request body is at most {MAX_INVOKE_BODY} bytes.")
        loaded = self.table.get(name)
        if loaded is None:
            return 404, _message(f"Model {name} is not loaded.")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request = InvocationRequest(
            body,
            headers.get("content-type"),
            headers.get("accept"),
            headers.get("x-amzn-sagemaker-custom-attributes"),
            headers,
        )
        try:
            response = await self._workers.submit((loaded.service, request))
        except InvocationError as error:
            return error.status, error.body()
        except Exception as error:  # a handler bug: its message, never a traceback on the wire
            log.exception("inference failed for model %s", name)
            return 500, _message(public_message(error))
        return 200, response


def _invoke_pair(job: tuple[ModelService, InvocationRequest]) -> InvocationResponse:
    return invoke_service(*job)


async def _body(receive: Any, limit: int) -> bytes | None:
    """The request body, or None once it passes `limit` bytes (the rest is not kept)."""
    chunks: list[bytes] = []
    size = 0
    too_big = False
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            too_big = True
            chunks.clear()
        elif not too_big:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return None if too_big else b"".join(chunks)


def model_path_segment(name: str) -> str:
    """NAME as the one path segment of /models/NAME (for callers of this API)."""
    return quote(name, safe="")


def multi_model_app(service: object, threads: int) -> MultiModelApp:
    """The app for a stack's service, or SystemExit saying the stack serves one model only."""
    make = getattr(service, "for_model", None)
    if make is None:
        raise SystemExit(
            f"polyhost stack: {type(service).__name__} serves one model; "
            f"{MULTI_MODEL_ENV}=true is not supported by this stack"
        )
    environ = dict(os.environ)
    table = ModelTable(
        make,
        max_memory=_budget(MAX_MEMORY_ENV, environ),
        models_memory=_budget(MODELS_MEMORY_ENV, environ),
        load_timeout_s=_seconds(LOAD_TIMEOUT_ENV, environ, DEFAULT_LOAD_TIMEOUT_S),
    )
    return MultiModelApp(table, threads)
