"""The one-process baseline of the scikit-learn comparisons (`baseline_app.py`), in its own venv.

Installed into bench/work/venvs/baseline: starlette, and uvicorn, httptools, uvloop, orjson,
numpy, scikit-learn and joblib at the versions of the project's .venv, so that the server stack
under the app, the JSON library and the model code are the ones polyhost/sklearn runs with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.models import BuiltModel
from bench.peers import venvs
from bench.procs import Service, free_port

APP_DIR = Path(__file__).resolve().parent


def requirements() -> list[str]:
    return [
        "starlette",
        *(
            venvs.pinned(package)
            for package in (
                "uvicorn",
                "httptools",
                "uvloop",
                "orjson",
                "numpy",
                "scikit-learn",
                "joblib",
            )
        ),
    ]


def install(venv_root: Path) -> Path:
    return venvs.ensure(venv_root, "baseline", requirements())


@dataclass
class Baseline:
    bin_dir: Path
    model: BuiltModel
    folder: Path
    cpus: str | None = None
    service: Service | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/invocations"

    def start(self) -> Baseline:
        self.port = free_port()
        command = [
            str(self.bin_dir / "uvicorn"),
            "--app-dir",
            str(APP_DIR),
            "baseline_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
            "--workers",
            "1",
        ]
        if self.cpus:
            command = ["taskset", "-c", self.cpus, *command]
        self.service = Service(
            "baseline",
            command,
            self.folder / "baseline.log",
            env={"BASELINE_MODEL": str(self.model.model_file)},
        ).start()
        self.service.wait_http(f"http://127.0.0.1:{self.port}/ping", timeout=60)
        return self

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None

    def __enter__(self) -> Baseline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
