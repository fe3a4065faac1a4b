"""A tiny local HTTPS server for model data tests, with a test CA-less self-signed certificate.

It serves bytes by path (with ETags and 304s), redirects, and "trickle" paths that answer 200
and then send one byte at a time, for ever, until the client goes away — a server that hangs a
download. It records what it was asked and how many trickling connections the client closed.
Trust it in-process with the SSL_CERT_FILE variable (`https` fixture in test_artifacts) or by
passing the same variable to a polyhost subprocess.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """(cert, key) for 127.0.0.1 and localhost; skips the test when openssl is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class TlsFiles:
    """A tiny HTTPS server serving bytes by path, with ETags, counting what it is asked."""

    def __init__(self, cert: Path, key: Path, host: str = "127.0.0.1") -> None:
        self.cert = cert
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}  # path -> Location
        self.trickle: set[str] = set()  # paths that send a byte every `trickle_every_s`
        self.trickle_every_s = 0.05
        self.requests: list[tuple[str, str, str | None]] = []  # (path, status, If-None-Match)
        self.delay_s = 0.0
        self._lock = threading.Lock()
        self.trickling = 0  # connections trickling now
        self.trickle_closed = 0  # trickling connections the client closed
        self._stopping = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                condition = self.headers.get("If-None-Match")
                if path == "/redirect-to-http":
                    owner.requests.append((path, "302", condition))
                    self.send_response(302)
                    self.send_header("Location", f"http://127.0.0.1:{owner.port}/m.tar.gz")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path in owner.redirects:
                    owner.requests.append((path, "302", condition))
                    self.send_response(302)
                    self.send_header("Location", owner.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if path in owner.trickle:
                    owner.requests.append((path, "200", condition))
                    owner._trickle(self)
                    return
                data = owner.files.get(path)
                if data is None:
                    owner.requests.append((path, "404", condition))
                    self.send_error(404)
                    return
                etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
                if condition == etag:
                    owner.requests.append((path, "304", condition))
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                owner.requests.append((path, "200", condition))
                self.send_response(200)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                time.sleep(owner.delay_s)
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.host = host
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _trickle(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(1 << 20))  # never reached
        handler.end_headers()
        with self._lock:
            self.trickling += 1
        try:
            while not self._stopping.wait(self.trickle_every_s):
                handler.wfile.write(b"\0")
                handler.wfile.flush()
        except OSError:
            with self._lock:
                self.trickle_closed += 1
        finally:
            with self._lock:
                self.trickling -= 1

    def url(self, path: str) -> str:
        return f"https://{self.host}:{self.port}{path}"

    def close(self) -> None:
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()


class AcceptRecorder:
    """A listening TCP socket that never answers; `connections()` says how many clients came.

    An address refused by policy must not even be connected to: the kernel completes a TCP
    handshake into the backlog without `accept`, so a pending connection here proves one."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])
        self._accepted: list[socket.socket] = []

    def connections(self) -> int:
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return len(self._accepted)
            self._accepted.append(conn)

    def close(self) -> None:
        for conn in self._accepted:
            conn.close()
        self.sock.close()
