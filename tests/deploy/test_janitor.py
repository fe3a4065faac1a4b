"""The janitor against a real store and real folders: cached models nobody uses and container
folders of deleted endpoints go after their delay; what is in use stays, however old."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from polyhost.deploy.janitor import Janitor, Usage, interval_s
from polyhost.modeldata.store import ArtifactStore
from polyhost.settings import Settings

NOTHING = Usage(frozenset(), frozenset(), frozenset(), frozenset())


def tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def settings_for(tmp_path: Path, **values: float) -> Settings:
    return Settings(state_dir=tmp_path / "state", **values)  # type: ignore[arg-type]


def model_url(tmp_path: Path, name: str, size: int = 1000) -> str:
    archive = tmp_path / f"{name}.tar.gz"
    archive.write_bytes(tarball({"weights.bin": name.encode() * (size // len(name))}))
    return f"file://{archive}"


class Harness:
    """A store and a janitor whose `Usage` the test sets, as the deployer would report it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = ArtifactStore(settings.artifact_cache_dir, 1 << 30)
        self.usage = NOTHING
        self.janitor = Janitor(settings, self.store, lambda: self.usage)

    def sweep(self) -> None:
        asyncio.run(self.janitor.sweep())

    def models(self) -> set[str]:
        return {p.name for p in self.store.models_dir.iterdir()}

    def sweep_until(self, condition: Callable[[], bool], what: str) -> None:
        """Sweep until `condition` holds; the 30 s deadline only keeps a bug from hanging."""
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, f"not within 30 s: {what}"
            self.sweep()
            time.sleep(0.05)


def test_an_unused_model_goes_after_the_grace_period(tmp_path: Path) -> None:
    harness = Harness(settings_for(tmp_path, model_cache_grace_s=0.5))
    url = model_url(tmp_path, "a")
    folder = harness.store.fetch_and_extract(url, 30)
    harness.sweep()
    assert folder.is_dir()  # unused, but within its grace
    harness.sweep_until(lambda: not folder.exists(), "the unused model was removed")
    assert list((harness.settings.artifact_cache_dir / "index").iterdir()) == []
    assert list(harness.store.work_dir.iterdir()) == []
    assert harness.store.fetch_and_extract(url, 30) == folder  # fetched and extracted again
    assert (folder / "weights.bin").is_file()


@pytest.mark.parametrize("how", ["folder of a container", "URL of an endpoint being started"])
def test_a_model_in_use_stays_past_the_grace_period(tmp_path: Path, how: str) -> None:
    harness = Harness(settings_for(tmp_path, model_cache_grace_s=0.2))
    url = model_url(tmp_path, "a")
    folder = harness.store.fetch_and_extract(url, 30)
    if how.startswith("folder"):
        harness.usage = Usage(frozenset({folder}), frozenset(), frozenset(), frozenset())
    else:
        harness.usage = Usage(frozenset(), frozenset({url}), frozenset(), frozenset())
    deadline = time.monotonic() + 0.6  # three grace periods
    while time.monotonic() < deadline:
        harness.sweep()
        time.sleep(0.05)
    assert folder.is_dir()
    harness.usage = NOTHING  # the endpoint is deleted
    harness.sweep_until(lambda: not folder.exists(), "the model was removed once unused")


def test_over_the_cache_bound_the_oldest_unused_model_goes_at_once(tmp_path: Path) -> None:
    """Bound: unused models hold at most --model-cache-max-bytes after a sweep, even within
    their (hour-long) grace; the least recently used goes first."""
    harness = Harness(
        settings_for(tmp_path, model_cache_grace_s=3600, model_cache_max_bytes=150_000)
    )
    old = harness.store.fetch_and_extract(model_url(tmp_path, "old", 100_000), 30)
    new = harness.store.fetch_and_extract(model_url(tmp_path, "new", 100_000), 30)
    harness.sweep()
    assert harness.models() == {new.name}
    assert not old.exists()


def test_container_folders_of_deleted_endpoints_and_old_revisions_go(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, log_retention_s=0.3)
    harness = Harness(settings)
    root = settings.containers_dir
    folders = {
        name: root / name
        for name in ("live/r2", "live/r1", "failed/r5", "deleted/r3", "stopping/r4")
    }
    for folder in folders.values():
        (folder / "AllTraffic" / "i-0" / "c").mkdir(parents=True)
        (folder / "AllTraffic" / "i-0" / "c" / "container.log").write_text("log")
    harness.usage = Usage(
        model_dirs=frozenset(),
        model_urls=frozenset(),
        endpoints=frozenset({"live", "failed"}),
        revision_dirs=frozenset({folders["live/r2"], folders["failed/r5"], folders["stopping/r4"]}),
    )
    harness.sweep()
    assert all(folder.is_dir() for folder in folders.values())  # retention starts now
    harness.sweep_until(
        lambda: not folders["deleted/r3"].exists() and not folders["live/r1"].exists(),
        "the deleted endpoint's folder and the old revision were removed",
    )
    assert not (root / "deleted").exists()
    assert folders["live/r2"].is_dir()  # the current revision
    assert folders["failed/r5"].is_dir()  # the last (failed) attempt: its log says why
    assert folders["stopping/r4"].is_dir()  # its containers are still stopping
    assert sorted(p.name for p in root.iterdir()) == ["failed", "live", "stopping"]


def test_the_sweep_interval_follows_the_shortest_delay() -> None:
    assert interval_s(Settings()) == 60.0
    assert interval_s(Settings(model_cache_grace_s=1, log_retention_s=3600)) == 0.25
    assert interval_s(Settings(model_cache_grace_s=600, log_retention_s=8)) == 2.0
