"""A test container that can burn CPU and hold memory on request (and answer like echo).

Through `X-Amzn-SageMaker-Custom-Attributes`:
  burn=start|stop  spin one core in a child process until `stop` (at most 120 s); a child,
                   so the spinning holds no lock this server needs to answer /ping
  alloc=MB         allocate MB mebibytes, touch every page, and keep them
  sleep=SECONDS    sleep before answering
  status=CODE      answer with that status
Otherwise it answers "<ECHO_NAME>:<body>".
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = os.environ.get("ECHO_NAME", "busy")
HELD: list[bytearray] = []
SPINNER: list[subprocess.Popen[bytes]] = []
SPIN = "import time\nend = time.monotonic() + 120\nwhile time.monotonic() < end:\n    pass\n"


def start_burning() -> None:
    if not SPINNER or SPINNER[0].poll() is not None:
        SPINNER[:] = [subprocess.Popen([sys.executable, "-c", SPIN])]


def stop_burning() -> None:
    for spinner in SPINNER:
        spinner.kill()
        spinner.wait()
    SPINNER.clear()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:
        return

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200 if self.path == "/ping" else 404, b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        attrs = dict(
            part.split("=", 1)
            for part in (self.headers.get("X-Amzn-SageMaker-Custom-Attributes") or "").split(",")
            if "=" in part
        )
        if attrs.get("burn") == "start":
            start_burning()
        elif attrs.get("burn") == "stop":
            stop_burning()
        if "alloc" in attrs:
            block = bytearray(int(attrs["alloc"]) * 1024 * 1024)
            for offset in range(0, len(block), 4096):
                block[offset] = 1
            HELD.append(block)
        if "sleep" in attrs:
            time.sleep(float(attrs["sleep"]))
        self._send(int(attrs.get("status", "200")), NAME.encode() + b":" + body)


def main() -> None:
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
