"""The `/ping` + `/invocations` server of the container contract, shared by every stack.

A stack supplies a `ModelService`: `load()` (slow, runs once in a background thread; `/ping`
answers 503 until it returns) and `invoke()` (runs on a few worker threads so `/ping` stays
answerable while a prediction is busy — SageMaker wants the ping answered within 2 s). If
loading fails the process exits non-zero after logging why, so the host sees a clear reason
in the container log instead of an endpoint that never becomes healthy.

A short invocation does not hop at all once the model has shown it is fast: with one
inference thread (the default), after `INLINE_AFTER` invocations in a row each took under
`INLINE_MAX_S`, a small request (at most `INLINE_MAX_BODY` bytes) runs on the event loop itself,
as a one-process server's handler would, while none is at the worker. A one-row prediction then
costs no thread switch (about 0.15 ms at c=1), and `/ping` waits at most as long as one such
prediction. Any invocation that runs longer starts the count again, on the worker. The bound
is far above a fast model's calls (tens of times a 100-row xgboost or scikit-learn request)
because, on a busy machine, a call is now and then descheduled for a few milliseconds: at a
5 ms bound those hiccups kept a 1.5 ms model on the worker most of the time; and far below
SageMaker's 2 s for a ping. A model whose predictions vary widely can turn this off with
POLYHOST_INLINE_INVOCATIONS=false.

The hop to a worker is kept as short as it can be, since a one-row scikit-learn prediction
costs about as much as the HTTP around it: a request goes on a `queue.SimpleQueue`, and a
worker hands its answer back with one `call_soon_threadsafe`. (`run_in_executor` wraps each
call in a concurrent future, an asyncio future and the callbacks that chain them.) The GIL's
switch interval stays at Python's 5 ms: measured at 0.5 ms, the extra switches cost the
one-row scikit-learn request about 10 µs of CPU each, more than they saved in waiting.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger("polyhost.stack")


@dataclass(frozen=True)
class InvocationRequest:
    body: bytes
    content_type: str | None
    accept: str | None
    custom_attributes: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class InvocationResponse:
    body: bytes
    content_type: str
    status: int = 200
    custom_attributes: str | None = None
    # A streamed answer (stacks/toolkit/streaming.py): `body` first, then these chunks.
    stream: Iterator[bytes] | None = None


class InvocationError(Exception):
    """An error with the HTTP status to answer: 400 undecodable, 415 unsupported, 500 handler."""

    def __init__(self, status: int, message: str, *, json_key: str = "message") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.json_key = json_key  # TF Serving answers {"error": ...}; the inference toolkit text

    def body(self) -> bytes:
        return json.dumps({self.json_key: self.message}).encode()


MAX_MESSAGE_CHARS = 4096
# Inline invocations (see the module docstring): after this many short ones in a row, each
# under INLINE_MAX_S, requests of at most INLINE_MAX_BODY bytes.
INLINE_AFTER = 64
INLINE_MAX_S = 0.05
INLINE_MAX_BODY = 64 * 1024


def public_message(error: BaseException) -> str:
    """`Type: message` for the wire, without any traceback embedded in the message.

    Some frameworks put a traceback into the message itself (TorchScript's interpreter errors
    carry the serialized model code); the client gets the text before it and the final line.
    """
    text = str(error)
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.lstrip().startswith("Traceback"):
            tail = next((item for item in reversed(lines) if item.strip()), "")
            text = " ".join([*(item.strip() for item in lines[:index] if item.strip()), tail])
            break
    message = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return message[:MAX_MESSAGE_CHARS]


class ModelService(Protocol):
    def load(self) -> None: ...

    def invoke(self, request: InvocationRequest) -> InvocationResponse: ...


def _header_map(scope: dict[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


_T = TypeVar("_T")


class _Workers(Generic[_T]):
    """`threads` daemon threads running `invoke` for requests put on one queue (see above).

    A request is what `invoke` takes: the one-model app's `InvocationRequest`, the multi-model
    app's (model, request) pair."""

    def __init__(self, invoke: Callable[[_T], InvocationResponse], threads: int) -> None:
        self._invoke = invoke
        self._jobs: queue.SimpleQueue[
            tuple[_T, asyncio.AbstractEventLoop, asyncio.Future[InvocationResponse]]
        ] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"invoke-{n}", daemon=True)
            for n in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, request: _T) -> asyncio.Future[InvocationResponse]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[InvocationResponse] = loop.create_future()
        self._jobs.put((request, loop, future))
        return future

    def _next(self) -> tuple[_T, asyncio.AbstractEventLoop, asyncio.Future[InvocationResponse]]:
        """The next request, waiting for one (the idle wait a profile leaves out)."""
        return self._jobs.get()

    def _run(self) -> None:
        while True:
            request, loop, future = self._next()
            response: InvocationResponse | None = None
            failure: BaseException | None = None
            try:
                response = self._invoke(request)
            except BaseException as error:  # delivered to the request, never kills the thread
                failure = error
            try:
                loop.call_soon_threadsafe(_settle, future, response, failure)
            except RuntimeError:  # the loop is closed: the server is shutting down
                return
            del request, future, response, failure  # nothing held while waiting for the next


def _settle(
    future: asyncio.Future[InvocationResponse],
    response: InvocationResponse | None,
    error: BaseException | None,
) -> None:
    if future.cancelled():  # the client went away meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(response)  # type: ignore[arg-type]


class ContractApp:
    """Raw ASGI app: no framework between the socket and the model, for the shortest path."""

    def __init__(self, service: ModelService, threads: int = 1, *, inline: bool = True) -> None:
        self.service = service
        self.ready = threading.Event()
        self.workers: _Workers[InvocationRequest] = _Workers(self._invoke, threads)
        # Inline runs only with one inference thread: more means the user wants predictions
        # to overlap, and a model served by one thread may not be safe to call from two.
        self.inline = inline and threads == 1
        self._at_workers = 0  # invocations submitted and not answered yet
        self._short = 0  # invocations in a row that took under INLINE_MAX_S

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/ping":
            await send_reply(send, 200 if self.ready.is_set() else 503, b"", "text/plain")
            return
        if path != "/invocations":
            await send_reply(send, 404, b'{"message": "not found"}', "application/json")
            return
        if scope["method"] != "POST":
            await send_reply(send, 405, b'{"message": "use POST /invocations"}', "application/json")
            return
        message = await receive()
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):
            chunks = [body]
            while message.get("more_body", False):
                message = await receive()
                chunks.append(message.get("body", b""))
            body = b"".join(chunks)
        if not self.ready.is_set():
            await send_reply(send, 503, b'{"message": "model is loading"}', "application/json")
            return
        headers = _header_map(scope)
        request = InvocationRequest(
            body,
            headers.get("content-type"),
            headers.get("accept"),
            headers.get("x-amzn-sagemaker-custom-attributes"),
            headers,
        )
        try:
            if (
                self.inline
                and self._short >= INLINE_AFTER
                and self._at_workers == 0
                and len(body) <= INLINE_MAX_BODY
            ):
                response = self._invoke(request)
            else:
                response = await self._at_worker(request)
        except InvocationError as error:
            await send_reply(send, error.status, error.body(), "application/json")
            return
        except Exception as error:  # a handler bug: its message, never a traceback on the wire
            log.exception("inference failed")
            message = public_message(error)
            await send_reply(
                send, 500, json.dumps({"message": message}).encode(), "application/json"
            )
            return
        extra = []
        if response.custom_attributes is not None:
            extra.append(
                (b"x-amzn-sagemaker-custom-attributes", response.custom_attributes.encode())
            )
        if response.stream is not None:
            from polyhost.stacks.toolkit.streaming import send_stream

            head = [(b"content-type", response.content_type.encode("latin-1")), *extra]
            await send_stream(send, receive, response.status, head, response.body, response.stream)
            return
        await send_reply(send, response.status, response.body, response.content_type, extra)

    async def _at_worker(self, request: InvocationRequest) -> InvocationResponse:
        self._at_workers += 1
        try:
            return await self.workers.submit(request)
        finally:
            self._at_workers -= 1

    def _invoke(self, request: InvocationRequest) -> InvocationResponse:
        """On the loop or the worker (one at a time: see `_at_workers`), counting the short
        runs in a row."""
        started = time.perf_counter()
        try:
            return invoke_service(self.service, request)
        finally:
            short = time.perf_counter() - started < INLINE_MAX_S
            self._short = self._short + 1 if short else 0


def invoke_service(service: ModelService, request: InvocationRequest) -> InvocationResponse:
    """`service.invoke(request)`, with a handler's attempt to exit the process (sys.exit())
    turned into the error of that one request, for the one-model and the multi-model app."""
    try:
        return service.invoke(request)
    except (SystemExit, KeyboardInterrupt) as error:  # a handler calling sys.exit()
        raise RuntimeError(f"the handler tried to exit ({error!r})") from None


async def send_reply(
    send: Any,
    status: int,
    body: bytes,
    content_type: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A whole answer on ASGI's `send`: the contract's head (type and length) and `body`."""
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _load_in_background(app: ContractApp) -> None:
    try:
        app.service.load()
    except BaseException as error:  # also SystemExit from a user script: never hang unhealthy
        log.exception("model failed to load")
        reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        print(f"polyhost stack: model failed to load: {reason}", file=sys.stderr, flush=True)
        os._exit(1)
    # The model's objects live as long as the process: moved out of the collector's
    # generations, they are no longer traversed by every full collection that request garbage
    # (a big JSON body read into lists builds some 100,000 containers) sets off.
    gc.collect()
    gc.freeze()
    app.ready.set()
    log.info("model loaded; healthy")


def _int_setting(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        print(f"polyhost stack: {name}={value!r} is not a positive integer", file=sys.stderr)
        sys.exit(2)
    return number


def serve(service: ModelService) -> None:
    """Run the contract server on SAGEMAKER_BIND_TO_PORT (8080 when unset) until SIGTERM.

    The model starts loading before the web server is even imported: the framework's import
    (the bulk of the start-up time) overlaps with the server's own start.
    """
    logging.basicConfig(
        level=os.environ.get("POLYHOST_STACK_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    port = _int_setting("SAGEMAKER_BIND_TO_PORT", 8080)
    # 0.0.0.0 as in SageMaker's images (a container's port is published from outside); the
    # process backend passes POLYHOST_BIND_HOST=127.0.0.1.
    host = os.environ.get("POLYHOST_BIND_HOST", "0.0.0.0")
    threads = _int_setting("POLYHOST_INFERENCE_THREADS", 1)
    inline = os.environ.get("POLYHOST_INLINE_INVOCATIONS", "true").strip().lower() != "false"
    app: Any
    if os.environ.get("SAGEMAKER_MULTI_MODEL", "").strip().lower() == "true":
        # SageMaker's multi-model API: no model at start, each loaded on request.
        from polyhost.stacks.toolkit.multi_model import multi_model_app

        app = multi_model_app(service, threads)
    else:
        app = ContractApp(service, threads=threads, inline=inline)
        threading.Thread(target=_load_in_background, args=(app,), daemon=True).start()
    import uvicorn

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover
        loop = "asyncio"
    uvicorn.run(
        app,
        host=host,
        port=port,
        loop=loop,
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=75,
        proxy_headers=False,  # the client's address is never read: no middleware for it
        backlog=2048,
    )
