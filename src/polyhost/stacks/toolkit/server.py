"""The `/ping` + `/invocations` server of the container contract, shared by every stack.

A stack supplies a `ModelService`: `load()` (slow, runs once in a background thread; `/ping`
answers 503 until it returns) and `invoke()` (runs in a small thread pool so `/ping` stays
answerable while a prediction is busy — SageMaker wants the ping answered within 2 s). If
loading fails the process exits non-zero after logging why, so the host sees a clear reason
in the container log instead of an endpoint that never becomes healthy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

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


class ContractApp:
    """Raw ASGI app: no framework between the socket and the model, for the shortest path."""

    def __init__(self, service: ModelService, threads: int = 1) -> None:
        self.service = service
        self.ready = threading.Event()
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="invoke")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/ping":
            await self._reply(send, 200 if self.ready.is_set() else 503, b"", "text/plain")
            return
        if path != "/invocations":
            await self._reply(send, 404, b'{"message": "not found"}', "application/json")
            return
        if scope["method"] != "POST":
            await self._reply(
                send, 405, b'{"message": "use POST /invocations"}', "application/json"
            )
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        if not self.ready.is_set():
            await self._reply(send, 503, b'{"message": "model is loading"}', "application/json")
            return
        headers = _header_map(scope)
        request = InvocationRequest(
            body=b"".join(chunks),
            content_type=headers.get("content-type"),
            accept=headers.get("accept"),
            custom_attributes=headers.get("x-amzn-sagemaker-custom-attributes"),
            headers=headers,
        )
        loop = asyncio.get_running_loop()
        try:
            response = await loop.run_in_executor(self.executor, self._invoke, request)
        except InvocationError as error:
            await self._reply(send, error.status, error.body(), "application/json")
            return
        except Exception as error:  # a handler bug: its message, never a traceback on the wire
            log.exception("inference failed")
            message = public_message(error)
            await self._reply(
                send, 500, json.dumps({"message": message}).encode(), "application/json"
            )
            return
        extra = []
        if response.custom_attributes is not None:
            extra.append(
                (b"x-amzn-sagemaker-custom-attributes", response.custom_attributes.encode())
            )
        await self._reply(send, response.status, response.body, response.content_type, extra)

    def _invoke(self, request: InvocationRequest) -> InvocationResponse:
        try:
            return self.service.invoke(request)
        except (SystemExit, KeyboardInterrupt) as error:  # a handler calling sys.exit()
            raise RuntimeError(f"the handler tried to exit ({error!r})") from None

    @staticmethod
    async def _reply(
        send: Any,
        status: int,
        body: bytes,
        content_type: str,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
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
    app = ContractApp(service, threads=threads)
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
        backlog=2048,
    )
