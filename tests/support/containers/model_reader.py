"""A container for tests that reports what it can read of its model data.

It honours the container contract (GET /ping, POST /invocations on SAGEMAKER_BIND_TO_PORT) and
answers every invocation with JSON describing its model folder (SM_MODEL_DIR, SageMaker's
/opt/ml/model): the folder's path as given and resolved, and every entry below it (a file's
first bytes, a link's target, or what stopped the read). The request body may be a JSON list
of extra names, relative to the model folder, to try to open: that is how a test asks it to
follow a link out of its model folder, as a hostile model would.
"""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL_DIR = os.environ.get("SM_MODEL_DIR", "/opt/ml/model")
SHOWN_BYTES = 200


def _read(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(SHOWN_BYTES).decode("utf-8", "replace")
    except OSError as error:
        return f"<{type(error).__name__}: {error.strerror}>"


def report(extra: list[str]) -> dict[str, Any]:
    entries: dict[str, str] = {}
    for folder, dirs, files in os.walk(MODEL_DIR):
        for name in sorted(dirs + files):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, MODEL_DIR)
            if os.path.islink(path):
                entries[rel] = "-> " + os.readlink(path)
            elif os.path.isdir(path):
                entries[rel] = "<dir>"
            else:
                entries[rel] = _read(path)
    return {
        "model_dir": MODEL_DIR,
        "resolved": os.path.realpath(MODEL_DIR),
        "entries": entries,
        "reads": {name: _read(os.path.join(MODEL_DIR, name)) for name in extra},
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
        self._send(200 if self.path == "/ping" else 404, b"{}")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            extra = json.loads(body) if body.strip() else []
        except ValueError:
            extra = []
        names = [str(name) for name in extra] if isinstance(extra, list) else []
        self._send(200, json.dumps(report(names)).encode())


def main() -> None:
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    host = os.environ.get("POLYHOST_BIND_HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
