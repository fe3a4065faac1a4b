"""Fixtures' helpers for the Docker tests: the daemon (or a skip saying why), the test images,
servers started with `--backend docker`, and a steady load that counts what failed."""

from __future__ import annotations

import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from polyhost.backends.docker.labels import HOSTNAME, SERVER
from polyhost.backends.server_id import server_id
from tests.support import docker_env
from tests.support.server import PolyhostProcess

SETUP_HINT = "run scripts/docker-up.sh (as root), or point DOCKER_HOST at a daemon"
_built: list[bool] = []


def client_or_skip() -> Any:
    """A Docker SDK client for the test daemon, or a pytest skip that says why there is none."""
    try:
        import docker  # noqa: F401
    except ImportError:
        pytest.skip(
            "Docker tests: the Docker SDK is not installed (pip install 'polyhost[docker]')"
        )
    from polyhost.backends.docker.daemon import DaemonUnavailable, connect

    docker_env.apply()
    try:
        return connect(600)
    except DaemonUnavailable as error:
        pytest.skip(f"Docker tests: {error}; {SETUP_HINT}")


def ensure_images() -> None:
    """Build the test images once per session (a cache hit when scripts/docker-up.sh ran)."""
    if not _built:
        from tests.support.docker_images import build_all

        build_all()
        _built.append(True)


def docker_server(
    state_dir: Path, *extra: str, image_config: Path | None = None, port: int = 0
) -> PolyhostProcess:
    return PolyhostProcess(
        state_dir=state_dir,
        image_config=image_config,
        extra_args=["--backend", "docker", *extra],
        port=port,
    )


def labelled(client: Any, state_dir: Path) -> list[dict[str, Any]]:
    """Every container (running or not) with the server id of `state_dir`, as `docker ps -a`
    lists them (Id, Labels, State): one call, so none vanishes between list and inspect."""
    filters = {"label": [f"{SERVER}={server_id(state_dir)}"]}
    return list(client.api.containers(all=True, filters=filters))


def by_hostname(client: Any, state_dir: Path, state: str = "running") -> dict[str, str]:
    """Container hostname → Docker id of the server's containers in `state`."""
    return {
        c["Labels"][HOSTNAME]: c["Id"] for c in labelled(client, state_dir) if c["State"] == state
    }


def sklearn_model(folder: Path) -> tuple[str, list[list[float]]]:
    """A real iris LogisticRegression as model.tar.gz: (file:// URL, sample rows)."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(features, labels)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    archive = folder / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "model.joblib", arcname="model.joblib")
    rows = [features[i].tolist() for i in (0, 60, 120)]
    return archive.as_uri(), rows


@dataclass
class SteadyLoad:
    """Calls `call` in a loop on a thread until stopped; keeps every failure."""

    call: Callable[[], object]
    calls: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> SteadyLoad:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=120)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.call()
            except Exception as error:
                self.failures.append(f"{type(error).__name__}: {error}")
            self.calls += 1
