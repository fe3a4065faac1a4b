"""TorchServe serving the MNIST CNN (TorchScript) with a JSON handler, 1 or more workers.

Installed into bench/work/venvs/torchserve: torch (the project's version), torchserve,
torch-model-archiver and PyYAML (TorchServe 0.12 imports it without declaring it). Java 17 must
be on PATH. Token authorization is off (`disable_token_authorization=true` and
`--disable-token-auth`), as a benchmark sends plain requests; access logging stays TorchServe's
default (asynchronous log4j).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.models import BuiltModel
from bench.peers import venvs
from bench.procs import Service, StartFailed, free_port

MODEL_NAME = "mnist"
HANDLER = Path(__file__).parent / "ts_handler.py"


def install(venv_root: Path) -> Path:
    if shutil.which("java") is None:
        raise StartFailed("TorchServe needs Java 17 (`java` on PATH); none is installed")
    return venvs.ensure(
        venv_root,
        "torchserve",
        [venvs.pinned("torch"), "torchserve", "torch-model-archiver", "pyyaml", "numpy"],
    )


def archive(bin_dir: Path, model: BuiltModel, store: Path) -> Path:
    """mnist.mar from model.pt and the JSON handler."""
    store.mkdir(parents=True, exist_ok=True)
    command = [
        str(bin_dir / "torch-model-archiver"),
        "--model-name",
        MODEL_NAME,
        "--version",
        "1.0",
        "--serialized-file",
        str(model.model_file),
        "--handler",
        str(HANDLER),
        "--export-path",
        str(store),
        "--force",
    ]
    done = subprocess.run(command, capture_output=True, timeout=300, check=False)
    if done.returncode != 0:
        raise StartFailed(f"torch-model-archiver failed: {done.stderr.decode(errors='replace')}")
    return store / f"{MODEL_NAME}.mar"


@dataclass
class TorchServe:
    bin_dir: Path
    store: Path
    folder: Path
    workers: int = 1
    threads: int | None = None  # OMP_NUM_THREADS of the workers; None: torch's default
    service: Service | None = None
    port: int = 0
    management_port: int = 0

    @property
    def infer_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/predictions/{MODEL_NAME}"

    def _workers_ready(self) -> bool:
        url = f"http://127.0.0.1:{self.management_port}/models/{MODEL_NAME}"
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                description = json.loads(answer.read())
        except (OSError, ValueError):
            return False
        workers = description[0].get("workers", []) if description else []
        ready = [w for w in workers if w.get("status") == "READY"]
        return len(ready) >= self.workers

    def start(self) -> TorchServe:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port, self.management_port = free_port(), free_port()
        config = self.folder / "config.properties"
        config.write_text(
            "\n".join(
                [
                    f"inference_address=http://127.0.0.1:{self.port}",
                    f"management_address=http://127.0.0.1:{self.management_port}",
                    f"metrics_address=http://127.0.0.1:{free_port()}",
                    "disable_token_authorization=true",
                    f"default_workers_per_model={self.workers}",
                    f"model_store={self.store}",
                    "install_py_dep_per_model=false",
                    "disable_system_metrics=true",
                    "job_queue_size=1000",
                ]
            )
            + "\n",
            encoding="utf-8",
        )
        command = [
            str(self.bin_dir / "torchserve"),
            "--start",
            "--foreground",
            "--ncs",
            "--ts-config",
            str(config),
            "--model-store",
            str(self.store),
            "--models",
            f"{MODEL_NAME}={MODEL_NAME}.mar",
            "--disable-token-auth",
        ]
        env = {
            "PATH": f"{self.bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "LOG_LOCATION": str(self.folder / "logs"),
            "METRICS_LOCATION": str(self.folder / "logs"),
        }
        if self.threads is not None:
            env["OMP_NUM_THREADS"] = str(self.threads)
        self.service = Service(
            f"torchserve ({self.workers} workers)",
            command,
            self.folder / "torchserve.log",
            env=env,
            cwd=self.folder,
        ).start()
        self.service.wait_until(self._workers_ready, 240, f"{self.workers} READY workers")
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop(grace=20)

    def __enter__(self) -> TorchServe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
