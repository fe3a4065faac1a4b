"""MLServer (Seldon) serving the digits model with its scikit-learn runtime, V2 protocol.

Installed into bench/work/venvs/mlserver (`mlserver`, `mlserver-sklearn`, and the project's
scikit-learn version, so the same joblib file loads). Its access log is off (`debug: false`),
as polyhost's is in these runs; everything else is MLServer's default unless a scenario sets
`parallel_workers` (default 1: inference in a separate worker process; 0: in the HTTP process).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench.models import BuiltModel
from bench.peers import venvs
from bench.procs import Service, free_port

MODEL_NAME = "digits"


def install(venv_root: Path) -> Path:
    return venvs.ensure(
        venv_root,
        "mlserver",
        [
            "mlserver",
            "mlserver-sklearn",
            venvs.pinned("scikit-learn"),
            venvs.pinned("joblib"),
            # MLServer 1.7.1's parallel workers call asyncio.get_event_loop() with no loop set,
            # which uvloop >= 0.22 refuses (SeldonIO/MLServer#2286): keep 0.21 until it is fixed.
            "uvloop<0.22",
        ],
    )


def v2_body(rows: list[list[float]]) -> bytes:
    """The same rows as an Open Inference Protocol (V2) request."""
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "predict",
                    "shape": [len(rows), len(rows[0])],
                    "datatype": "FP32",
                    "data": [value for row in rows for value in row],
                }
            ]
        }
    ).encode()


@dataclass
class MLServer:
    bin_dir: Path
    model: BuiltModel
    folder: Path
    parallel_workers: int | None = None
    service: Service | None = None
    port: int = 0

    @property
    def infer_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2/models/{MODEL_NAME}/infer"

    def start(self) -> MLServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        settings: dict[str, object] = {
            "host": "127.0.0.1",
            "http_port": self.port,
            "grpc_port": free_port(),
            "metrics_port": free_port(),
            "debug": False,
        }
        if self.parallel_workers is not None:
            settings["parallel_workers"] = self.parallel_workers
        (self.folder / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
        model_settings = {
            "name": MODEL_NAME,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": str(self.model.model_file.resolve()), "version": "v1"},
        }
        (self.folder / "model-settings.json").write_text(
            json.dumps(model_settings), encoding="utf-8"
        )
        self.service = Service(
            f"mlserver (parallel_workers={self.parallel_workers})",
            [str(self.bin_dir / "mlserver"), "start", str(self.folder)],
            self.folder / "mlserver.log",
            cwd=self.folder,
        ).start()
        self.service.wait_http(
            f"http://127.0.0.1:{self.port}/v2/models/{MODEL_NAME}/ready", timeout=180
        )
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop(grace=20)

    def __enter__(self) -> MLServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
