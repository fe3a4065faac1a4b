"""A bring-your-own multi-model container that can be made to forget its models (for tests).

It honours /ping and SageMaker's multi-model API: `POST /models {"model_name", "url"}` loads
(counting the loads of each name; 404 when `url` is no folder it sees, and it reads the
model's `weights.bin` there when it has one), `DELETE /models/<name>` unloads, `POST
/models/<name>/invoke` answers `{"model", "loads", "body", "pid"}` (the pid tells instances
apart), or 404 for a model it does not hold. Bodies steer it: `where` adds `url` (the folder
its load named) and `weights` (what the model's `weights.bin` held, or null); `forget` drops
every model (as a restart the server did not see would), then answers; `fail` answers 400, a
model's own refusal of its input; `sleep:<seconds>` answers after that long.
"""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

LOADED: set[str] = set()
LOADS: dict[str, int] = {}
URLS: dict[str, str] = {}
WEIGHTS: dict[str, str | None] = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, document: object) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        if self.path == "/ping":
            self._answer(200, {})
        elif self.path == "/models":
            self._answer(200, {"models": [{"modelName": name} for name in sorted(LOADED)]})
        else:
            self._answer(404, {"message": "no such route"})

    def do_DELETE(self) -> None:
        name = unquote(self.path.removeprefix("/models/"))
        if name in LOADED:
            LOADED.discard(name)
            self._answer(200, {"status": f"unloaded {name}"})
        else:
            self._answer(404, {"message": f"model {name} is not loaded"})

    def do_POST(self) -> None:
        body = self._body()
        if self.path == "/models":
            request = json.loads(body)
            name, url = str(request["model_name"]), str(request["url"])
            if not os.path.isdir(url):
                self._answer(404, {"message": f"no model folder at {url}"})
                return
            weights = os.path.join(url, "weights.bin")
            if os.path.isfile(weights):
                with open(weights, encoding="utf-8", errors="replace") as file:
                    WEIGHTS[name] = file.read()
            else:
                WEIGHTS[name] = None
            URLS[name] = url
            LOADED.add(name)
            LOADS[name] = LOADS.get(name, 0) + 1
            self._answer(200, {"status": f"loaded {name}"})
            return
        if not (self.path.startswith("/models/") and self.path.endswith("/invoke")):
            self._answer(404, {"message": "no such route"})
            return
        name = unquote(self.path[len("/models/") : -len("/invoke")])
        if name not in LOADED:
            self._answer(404, {"message": f"model {name} is not loaded"})
            return
        if body == b"fail":
            self._answer(400, {"message": "this model refuses that input"})
            return
        if body == b"forget":
            LOADED.clear()
        if body.startswith(b"sleep:"):
            time.sleep(min(float(body[6:]), 30.0))
        answer: dict[str, object] = {
            "model": name,
            "loads": LOADS[name],
            "body": body.decode(),
            "pid": os.getpid(),
        }
        if body == b"where":
            answer.update(url=URLS.get(name), weights=WEIGHTS.get(name))
        self._answer(200, answer)


def main() -> None:
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    host = os.environ.get("POLYHOST_BIND_HOST", "127.0.0.1")
    ThreadingHTTPServer((host, port), Handler).serve_forever()


if __name__ == "__main__":
    main()
