"""The tests' bring-your-own container: a plain http.server that speaks SageMaker's contract.

Answers GET /ping, and POST /invocations with JSON describing itself: its name (NAME), the body
it got, whether /opt/ml/model is writable and what it holds, and its environment's names. A body
`alloc:N` makes it allocate N MiB (to go over a memory limit); `exit:N` exits with code N.
"""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL_DIR = "/opt/ml/model"
HOARD = []


def model_writable():
    try:
        with open(os.path.join(MODEL_DIR, ".probe"), "w") as probe:
            probe.write("x")
        return True
    except OSError:
        return False


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def _answer(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/ping":
            self._answer(200, {"status": "ok"})
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace")
        if self.path != "/invocations":
            self._answer(404, {"error": "not found"})
            return
        if body.startswith("alloc:"):
            print(f"allocating {body[6:]} MiB", flush=True)
            for _ in range(int(body[6:])):
                HOARD.append(bytearray(1024 * 1024))
        if body.startswith("exit:"):
            os._exit(int(body[5:]))
        files = sorted(os.listdir(MODEL_DIR)) if os.path.isdir(MODEL_DIR) else None
        self._answer(
            200,
            {
                "name": os.environ.get("NAME", "byo"),
                "body": body,
                "model_writable": model_writable(),
                "model_files": files,
                "environment": sorted(os.environ),
                "argv": sys.argv[1:],
            },
        )


def main():
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    host = os.environ.get("POLYHOST_BIND_HOST", "0.0.0.0")
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"byo serving on {host}:{port} with {sys.argv[1:]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
