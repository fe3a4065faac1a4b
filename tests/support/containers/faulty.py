"""A container that misbehaves on purpose, for the reliability tests: one fault per start.

It honours the container contract (GET /ping, POST /invocations on SAGEMAKER_BIND_TO_PORT) except
where its fault says otherwise. The fault comes from the container's Environment, so a test sets
it through CreateModel:

  FAULT=exit-at-start          print a line, exit with code 3 before serving
  FAULT=never-ping             listen, but /ping answers 500 forever
  FAULT=hang                   /ping is fine; /invocations is accepted and never answered
  FAULT=flood-stdout           serve normally while a thread writes to stdout as fast as it can
  FAULT=allocate               serve, and after FAULT_AFTER_S grow memory in 16 MiB steps until
                               killed (or, under an address-space limit, exit 137 on MemoryError);
                               never past FAULT_MAX_BYTES, 1 GiB by default, so a machine that
                               cannot limit memory is not eaten
  FAULT=fork-and-escape        serve, after double-forking a grandchild that calls setsid, writes
                               its pid to FAULT_PID_FILE (default: grandchild.pid in the working
                               folder) and sleeps forever (keeping the container's stdout open)
  FAULT=malformed-http         /ping is fine; /invocations answers bytes that are not HTTP
  FAULT=close-mid-response     /ping is fine; /invocations sends headers and part of the body,
                               then closes the connection
  FAULT=ping-then-stop-pinging /ping answers 200 for FAULT_AFTER_S seconds (default 1), then 503
                               while the process lives on (a hung model server)

Without FAULT (or for the part of a fault that serves normally), /invocations answers
"<FAULT_NAME>:<body>", FAULT_NAME defaulting to "faulty". Standard library only.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULT = os.environ.get("FAULT", "")
NAME = os.environ.get("FAULT_NAME", "faulty")
AFTER_S = float(os.environ.get("FAULT_AFTER_S", "1"))
MAX_BYTES = int(os.environ.get("FAULT_MAX_BYTES", str(1 << 30)))
STARTED = time.monotonic()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path != "/ping":
            self._send(404, b"")
        elif FAULT == "never-ping":
            self._send(500, b"never ready")
        elif FAULT == "ping-then-stop-pinging" and time.monotonic() - STARTED > AFTER_S:
            self._send(503, b"stopped being healthy")
        else:
            self._send(200, b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if FAULT == "hang":
            threading.Event().wait()  # accepted, never answered
        if FAULT == "malformed-http":
            self.wfile.write(b"\x00\xffthis is not HTTP at all\r\n\r\n\x01\x02")
            self.wfile.flush()
            self.close_connection = True
            return
        if FAULT == "close-mid-response":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only the first bytes")
            self.wfile.flush()
            self.request.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self._send(200, NAME.encode() + b":" + body)


def flood() -> None:
    line = b"x" * 1023 + b"\n"
    chunk = line * 64
    out = sys.stdout.buffer
    while True:
        out.write(chunk)


def allocate() -> None:
    time.sleep(AFTER_S)
    blocks = []
    held = 0
    while held < MAX_BYTES:
        try:
            block = bytearray(16 << 20)
        except MemoryError:  # an address-space limit (no cgroup here): the model crashes
            print(f"{NAME}: out of memory at {held >> 20} MiB", flush=True)
            os._exit(137)
        for offset in range(0, len(block), 4096):
            block[offset] = 1  # touch every page: resident, not just reserved
        blocks.append(block)
        held += len(block)
        print(f"{NAME}: holding {held >> 20} MiB", flush=True)
    print(f"{NAME}: reached FAULT_MAX_BYTES without being stopped", flush=True)
    threading.Event().wait()


def fork_and_escape() -> None:
    pid_file = os.environ.get("FAULT_PID_FILE", "grandchild.pid")
    if os.fork() == 0:  # child
        os.setsid()
        if os.fork() == 0:  # grandchild: no parent, no group of the container's
            with open(pid_file + ".tmp", "w") as out:
                out.write(str(os.getpid()))
            os.replace(pid_file + ".tmp", pid_file)
            while True:
                time.sleep(3600)
        os._exit(0)
    os.wait()  # the child exits at once: the grandchild is an orphan now


def main() -> None:
    print(f"{NAME}: starting with FAULT={FAULT or 'none'}", flush=True)
    if FAULT == "exit-at-start":
        print(f"{NAME}: configured to fail at start", file=sys.stderr, flush=True)
        sys.exit(3)
    if FAULT == "fork-and-escape":
        fork_and_escape()
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    host = os.environ.get("POLYHOST_BIND_HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    if FAULT == "flood-stdout":
        threading.Thread(target=flood, daemon=True).start()
    if FAULT == "allocate":
        threading.Thread(target=allocate, daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
