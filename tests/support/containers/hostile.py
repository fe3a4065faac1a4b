"""A container that attacks the server through its answers, for the reliability tests.

It honours the container contract (GET /ping, POST /invocations on SAGEMAKER_BIND_TO_PORT); what
it does wrong comes from its Environment, so a test sets it through CreateModel:

  HOSTILE=huge-header-line  /invocations answers a status line, then one header line of
                            HOSTILE_BYTES bytes (256 MiB by default), sent as fast as the
                            server takes it
  HOSTILE=many-headers      /invocations answers HOSTILE_COUNT small headers (two million by
                            default) before the blank line
  HOSTILE=huge-trailer      /invocations answers a chunked body whose trailer is one header line
                            of HOSTILE_BYTES bytes
  HOSTILE=huge-ping         /ping answers 200, then one header line of HOSTILE_BYTES bytes;
                            /invocations is normal
  HOSTILE=escapes           at start, print terminal escape sequences to stdout (a clipboard
                            write, a title change, a screen clear, a cursor query), then serve
                            normally

Each attack runs until the server stops reading (the send fails) or it is all sent; the bytes
it managed to send are printed to stdout (its log) as "sent N bytes", so a test can tell how
much the server took. Otherwise /invocations answers "<HOSTILE_NAME>:<body>" (HOSTILE_NAME
defaults to "hostile"). Standard library only.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = os.environ.get("HOSTILE", "")
NAME = os.environ.get("HOSTILE_NAME", "hostile")
SIZE = int(os.environ.get("HOSTILE_BYTES", str(256 << 20)))
COUNT = int(os.environ.get("HOSTILE_COUNT", "2000000"))
CHUNK = 64 * 1024

# What a hostile program prints to reach the terminal of whoever reads its log: an OSC 52
# clipboard write, an OSC 0 title change, a screen clear with the cursor sent home, and a
# device-status query the terminal answers on its own input.
ESCAPES = (
    "clipboard:\x1b]52;c;cm0gLXJmIH4K\x07 "
    "title:\x1b]0;owned\x07 "
    "clear:\x1b[2J\x1b[H "
    "query:\x1b[6n "
    "bell:\x07 c1:\x9b31m end"
)


def filler(size: int) -> Iterator[bytes]:
    block = b"a" * CHUNK
    while size > 0:
        yield block[:size]
        size -= CHUNK


def many_headers(count: int) -> Iterator[bytes]:
    batch = b"X-N: 1\r\n" * 8192
    while count > 0:
        take = min(count, 8192)
        yield batch[: take * 8]
        count -= take


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

    def _attack(self, parts: Iterator[bytes]) -> None:
        """Send `parts` until done or until the server stops taking them; report the count."""
        sent = 0
        try:
            for part in parts:
                self.wfile.write(part)
                sent += len(part)
            self.wfile.flush()
        except OSError:
            pass
        print(f"{NAME}: sent {sent} bytes", flush=True)
        self.close_connection = True

    def do_GET(self) -> None:
        if self.path != "/ping":
            self._send(404, b"")
        elif MODE == "huge-ping":
            self._attack(
                iter(
                    [b"HTTP/1.1 200 OK\r\nX-Big: ", *filler(SIZE), b"\r\nContent-Length: 0\r\n\r\n"]
                )
            )
        else:
            self._send(200, b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if MODE == "huge-header-line":
            self._attack(
                iter(
                    [b"HTTP/1.1 200 OK\r\nX-Big: ", *filler(SIZE), b"\r\nContent-Length: 0\r\n\r\n"]
                )
            )
        elif MODE == "many-headers":
            self._attack(
                iter([b"HTTP/1.1 200 OK\r\n", *many_headers(COUNT), b"Content-Length: 0\r\n\r\n"])
            )
        elif MODE == "huge-trailer":
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-T: "
            self._attack(iter([head, *filler(SIZE), b"\r\n\r\n"]))
        else:
            self._send(200, NAME.encode() + b":" + body)


def main() -> None:
    if MODE == "escapes":
        print(f"{NAME}: {ESCAPES}", flush=True)
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    host = os.environ.get("POLYHOST_BIND_HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    print(f"{NAME}: listening on {port} ({MODE or 'no attack'})", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
