"""A container for tests that tries what a hostile tenant's container tries, and reports it.

It honours the container contract (GET /ping, POST /invocations on SAGEMAKER_BIND_TO_PORT).
An invocation's body is a JSON object of attempts; the answer says, for each, what got
through:

- `read`: paths to open and read (the auth file, the state database, the admin token, the
  server's /proc/<pid>/environ): the first bytes, or the error;
- `unix`: Unix sockets to connect to (the Docker daemon's);
- `post`: `[host, port]` pairs to POST `/invocations` to (another container's port);
- `get`: URLs to GET (the admin listener's API on loopback).

Every answer also says who the container is: its uid, gid and port, so a test can aim one
container at another's port, and see which user it runs as.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SHOWN_BYTES = 120
TIMEOUT_S = 2.0


def _error(error: BaseException) -> str:
    detail = getattr(error, "strerror", None) or getattr(error, "reason", None) or error
    return f"<{type(error).__name__}: {detail}>"


def _read(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return "ok: " + handle.read(SHOWN_BYTES).decode("utf-8", "replace")
    except OSError as error:
        return _error(error)


def _unix(path: str) -> str:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT_S)
            sock.connect(path)
        return "ok: connected"
    except OSError as error:
        return _error(error)


def _post(host: str, port: int) -> str:
    try:
        connection = http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
        connection.request("POST", "/invocations", body=b"{}", headers={"Content-Type": "x"})
        answer = connection.getresponse()
        body = answer.read(SHOWN_BYTES).decode("utf-8", "replace")
        connection.close()
        return f"ok: {answer.status} {body}"
    except OSError as error:
        return _error(error)


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as answer:
            return f"ok: {answer.status}"
    except urllib.error.HTTPError as error:
        return f"ok: {error.code}"  # the listener answered (with a refusal)
    except (OSError, urllib.error.URLError) as error:
        return _error(error)


def report(attempts: dict[str, Any]) -> dict[str, Any]:
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "groups": os.getgroups(),
        "port": int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "0")),
        "read": {path: _read(path) for path in attempts.get("read", [])},
        "unix": {path: _unix(path) for path in attempts.get("unix", [])},
        "post": {
            f"{host}:{port}": _post(host, int(port)) for host, port in attempts.get("post", [])
        },
        "get": {url: _get(url) for url in attempts.get("get", [])},
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/ping":
            self._send(200, b"{}")
        else:
            self._send(404, b"{}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path != "/invocations":
            self._send(404, b"{}")
            return
        try:
            attempts = json.loads(raw or b"{}")
        except ValueError:
            attempts = {}
        if not isinstance(attempts, dict):
            attempts = {}
        self._send(200, json.dumps(report(attempts)).encode())


def main() -> None:
    host = os.environ.get("POLYHOST_BIND_HOST", "127.0.0.1")
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    ThreadingHTTPServer((host, port), Handler).serve_forever()


if __name__ == "__main__":
    main()
