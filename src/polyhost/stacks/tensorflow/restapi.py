"""An internal TensorFlow Serving REST API for `code/inference.py` handlers.

In SageMaker's TensorFlow container a handler does not get the model: it gets
`context.rest_uri` (`http://localhost:8501/v1/models/<name>:predict`) and posts to the
TensorFlow Serving process with `requests`. To run such handlers unchanged, this stack serves
the same routes in-process, on loopback only:

    POST /v1/models/<name>[/versions/<n>]:(predict|classify|regress)
    GET  /v1/models/<name>[/versions/<n>]            (model status)
    GET  /v1/models/<name>[/versions/<n>]/metadata   (signatures)

It is a separate small threaded server rather than a route on the contract port because the
handler calls it *while* it is handling an `/invocations` request: on the same worker pool that
call would wait for itself. The port comes from SAGEMAKER_SAFE_PORT_RANGE (the second port of
the range, as SageMaker uses low+1 for TensorFlow Serving's REST port), else an ephemeral one.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from polyhost.stacks.tensorflow.errors import TfsError
from polyhost.stacks.tensorflow.payloads import parse_request
from polyhost.stacks.tensorflow.repository import ModelRepository

log = logging.getLogger("polyhost.stack.tensorflow.rest")

_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<method>[a-z]+))?/?$"
)
HOST = "127.0.0.1"
MAX_BODY = 64 * 1024 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    repository: ModelRepository


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: handlers may post many times
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._answer(status, json.dumps({"error": message}).encode())

    def _route(self) -> re.Match[str] | None:
        match = _ROUTE.match(self.path.split("?", 1)[0])
        if match is None:
            self._error(404, f"Malformed request: {self.command} {self.path}")
        return match

    def do_GET(self) -> None:
        match = self._route()
        if match is None:
            return
        if match["method"]:
            self._error(405, f"use POST for :{match['method']}")
            return
        repository = self.server.repository
        try:
            if match["metadata"]:
                model = repository.resolve(match["name"], match["version"])
                answer = model.metadata()
            else:
                answer = repository.status(match["name"], match["version"])
        except TfsError as error:
            self._error(error.status, error.message)
            return
        self._answer(200, json.dumps(answer).encode())

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        match = self._route()
        if match is None:
            return
        if not match["method"] or match["metadata"]:
            self._error(405, "POST to /v1/models/<name>[/versions/<n>]:predict|classify|regress")
            return
        try:
            request = parse_request(body)
            answer = self.server.repository.handle(
                match["method"], request, match["name"], match["version"]
            )
        except TfsError as error:
            self._error(error.status, error.message)
            return
        except Exception as error:  # a model failure: its message, never a traceback
            log.exception("prediction failed")
            self._error(500, f"{type(error).__name__}: {error}")
            return
        self._answer(200, answer)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            try:
                return self._read_chunked()
            except ValueError:
                self.close_connection = True
                self._error(HTTPStatus.BAD_REQUEST, "malformed chunked body")
                return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._error(HTTPStatus.BAD_REQUEST, "a body of a valid Content-Length is required")
            return None
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY:
                self.close_connection = True
                self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline()


class TfsRestServer:
    """The internal REST API on 127.0.0.1, served from a daemon thread."""

    def __init__(self, repository: ModelRepository, ports: list[int]) -> None:
        self._server = self._bind(ports)
        self._server.repository = repository
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tfs-rest", daemon=True
        )

    @staticmethod
    def _bind(ports: list[int]) -> _Server:
        last: OSError | None = None
        for port in ports or [0]:
            try:
                return _Server((HOST, port), _Handler)
            except OSError as error:
                last = error
        raise OSError(f"no free port for the TensorFlow Serving REST API in {ports}: {last}")

    def start(self) -> TfsRestServer:
        self._thread.start()
        log.info("TensorFlow Serving REST API for handlers on http://%s:%d", HOST, self.port)
        return self

    def uri(self, name: str, version: str | None, method: str) -> str:
        """SageMaker's `context.rest_uri` for a model, optional version and method."""
        path = f"/v1/models/{name}"
        if version:
            path += f"/versions/{version}"
        return f"http://{HOST}:{self.port}{path}:{method}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def candidate_ports(safe_range: tuple[int, int] | None) -> list[int]:
    """SageMaker's REST port (low+1) first, then the rest of the range; [] = ephemeral."""
    if safe_range is None:
        return []
    low, high = safe_range
    ports = list(range(low, high + 1))
    return ports[1:] + ports[:1] if len(ports) > 1 else ports
