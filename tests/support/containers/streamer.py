"""A container that streams its answer, for InvokeEndpointWithResponseStream's tests.

It honours the container contract (GET /ping, POST /invocations on SAGEMAKER_BIND_TO_PORT) and
answers /invocations in HTTP/1.1 chunks, each written (and flushed) on its own. What it streams
is told by the request's body, a JSON object, so one endpoint serves every test:

  {"parts": ["a", "b"]}          each string as one chunk
  {"count": N, "size": S}        N chunks of S bytes ("x" repeated)
  {"delay": 0.05}                seconds to sleep before each chunk (and before the head with
                                 "head_delay")
  {"then": "drop"}               after the chunks, close the connection without the last chunk
  {"then": "stall"}              after the chunks, send nothing more and keep the connection
  {"status": 500}                answer this status with the parts as one plain body
  {"content_type": "text/x"}     the answer's Content-Type (default text/plain)

When the request sends custom attributes, the answer's are `<them>;accept=<its Accept>`, so a
test sees what reached the container. Standard library only.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            plan: dict[str, Any] = json.loads(body or b"{}")
        except ValueError:
            plan = {"parts": [body.decode("latin-1")]}
        parts = [str(part).encode() for part in plan.get("parts", [])]
        if "count" in plan:
            chunk = b"x" * int(plan.get("size", 1024))
            parts += [chunk] * int(plan["count"])
        delay = float(plan.get("delay", 0))
        time.sleep(float(plan.get("head_delay", 0)))
        status = int(plan.get("status", 200))
        if status != 200:
            text = b"".join(parts) or b"failed on purpose"
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            return
        self.send_response(200)
        self.send_header("Content-Type", str(plan.get("content_type", "text/plain")))
        self.send_header("Transfer-Encoding", "chunked")
        attributes = self.headers.get("X-Amzn-SageMaker-Custom-Attributes")
        if attributes is not None:
            accept = self.headers.get("Accept", "-")
            self.send_header("X-Amzn-SageMaker-Custom-Attributes", f"{attributes};accept={accept}")
        self.end_headers()
        self.wfile.flush()
        try:
            for part in parts:
                if delay:
                    time.sleep(delay)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            then = plan.get("then", "end")
            if then == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if then == "stall":
                threading.Event().wait(float(plan.get("stall_s", 30)))
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # polyhost dropped the stream
            self.close_connection = True


def main() -> None:
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
