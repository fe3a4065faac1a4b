"""A bring-your-own container for tests: stdlib HTTP server honouring the container contract.

Behaviour is driven by the container's Environment (so tests set it through CreateModel):
  ECHO_NAME        prefixed to every answer as "<name>:" (default: hostname env or "echo")
  ECHO_NEVER_READY /ping answers 500 forever (prints a recognisable line to stderr first)
  ECHO_EXIT_AT_START  exit(3) right after printing a message
  ECHO_READY_FILE  /ping answers 503 until this file exists (the test decides when it is ready)
And per request, through X-Amzn-SageMaker-Custom-Attributes:
  say=TEXT         first thing on arrival, print "<name>: TEXT" to stdout (its log)
  arrived=DIR      first thing on arrival, create a new file in DIR (tests count arrivals)
  hold=PATH        answer only once PATH exists (at most HOLD_LIMIT_S later)
  sleep=SECONDS    sleep before answering
  status=CODE      answer with that status and the body as message
  crash=1          exit the process at once (os._exit)
  echo-attrs=1     return the custom attributes back
  whoami=1         answer "<name>@<port>" (tells replicas apart)
  model-file=NAME  answer the content of NAME in the model dir (SM_MODEL_DIR)
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = os.environ.get("ECHO_NAME", "echo")
HOLD_LIMIT_S = 300.0


def _wait_for_file(path: str) -> None:
    deadline = time.monotonic() + HOLD_LIMIT_S
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without NODELAY, Nagle's algorithm and
        # delayed ACKs add ~40 ms to every keep-alive exchange.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/ping":
            ready_file = os.environ.get("ECHO_READY_FILE")
            if os.environ.get("ECHO_NEVER_READY"):
                self._send(500, b"not ready", "text/plain", {})
            elif ready_file and not os.path.exists(ready_file):
                self._send(503, b"waiting for the ready file", "text/plain", {})
            else:
                self._send(200, b"", "text/plain", {})
        else:
            self._send(404, b"", "text/plain", {})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        attrs = dict(
            part.split("=", 1)
            for part in (self.headers.get("X-Amzn-SageMaker-Custom-Attributes") or "").split(",")
            if "=" in part
        )
        if "say" in attrs:
            print(f"{NAME}: {attrs['say']}", flush=True)
        if "arrived" in attrs:
            descriptor, _ = tempfile.mkstemp(dir=attrs["arrived"], prefix="request-")
            os.close(descriptor)
        if "hold" in attrs:
            _wait_for_file(attrs["hold"])
        if "sleep" in attrs:
            time.sleep(float(attrs["sleep"]))
        if attrs.get("crash") == "1":
            print(f"{NAME}: crashing on request", file=sys.stderr, flush=True)
            os._exit(7)
        extra: dict[str, str] = {}
        if attrs.get("echo-attrs") == "1":
            extra["X-Amzn-SageMaker-Custom-Attributes"] = self.headers.get(
                "X-Amzn-SageMaker-Custom-Attributes", ""
            )
        if "status" in attrs:
            self._send(int(attrs["status"]), body, "text/plain", extra)
            return
        if "model-file" in attrs:
            path = os.path.join(
                os.environ.get("SM_MODEL_DIR", "/opt/ml/model"), attrs["model-file"]
            )
            try:
                with open(path, "rb") as handle:
                    self._send(200, handle.read(), "application/octet-stream", extra)
            except OSError as error:
                self._send(404, str(error).encode(), "text/plain", extra)
            return
        if attrs.get("whoami") == "1":
            port = os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")
            self._send(200, f"{NAME}@{port}".encode(), "text/plain", extra)
            return
        content_type = self.headers.get("Content-Type") or "application/octet-stream"
        self._send(200, NAME.encode() + b":" + body, content_type, extra)


def main() -> None:
    if os.environ.get("ECHO_EXIT_AT_START"):
        print(f"{NAME}: configured to fail at start", file=sys.stderr, flush=True)
        sys.exit(3)
    if os.environ.get("ECHO_NEVER_READY"):
        print(f"{NAME}: will never be ready", file=sys.stderr, flush=True)
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    host = os.environ.get("POLYHOST_BIND_HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
