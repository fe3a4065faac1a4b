"""A multi-model container's models on its Ray node: the node's side (unpacked into a folder of
their own in the container's model folder, safely, removed one by one or all at once) and the
server's refusals that need no call to the node (its instance gone, a model too large to pack).

The whole path, on a real cluster, is tests/backends/ray/test_multi_model.py."""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from polyhost.backends.base import InstanceRequest, ModelStagingFailed
from polyhost.backends.ray import models as ray_models
from polyhost.backends.ray.container import PlacedInstance
from polyhost.backends.ray.staging import RayModelStaging


def _tar(members: dict[str, bytes]) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    return hashlib.sha256(data).hexdigest(), data


def test_each_load_gets_a_folder_of_its_own_in_the_container_model_folder(
    tmp_path: Path,
) -> None:
    model = tmp_path / "extracted"
    (model / "code").mkdir(parents=True)
    (model / "weights.bin").write_bytes(b"w" * 10)
    (model / "code" / "inference.py").write_text("x = 1\n", encoding="utf-8")
    digest, data = ray_models.pack(model, max_bytes=1 << 20)
    models_dir = tmp_path / "container" / "model"
    first = ray_models.staged_name("team-a/m.tar.gz")
    second = ray_models.staged_name("team-a/m.tar.gz")
    assert first != second and first[:24] == second[:24]  # one model, two loads
    path = ray_models.unpack_staged(models_dir, first, digest, data)
    assert path == models_dir / first / "model"
    assert (path / "weights.bin").read_bytes() == b"w" * 10
    assert (path / "code" / "inference.py").read_text(encoding="utf-8") == "x = 1\n"
    ray_models.unpack_staged(models_dir, second, digest, data)
    assert sorted(p.name for p in models_dir.iterdir()) == sorted([first, second])  # no temp
    ray_models.remove_staged(models_dir, first)
    ray_models.remove_staged(models_dir, first)  # already gone: no error
    assert [p.name for p in models_dir.iterdir()] == [second]
    ray_models.clear_staged(models_dir)
    assert list(models_dir.iterdir()) == []
    ray_models.clear_staged(tmp_path / "never-made")  # nothing to clear: no error


@pytest.mark.parametrize(
    "members", [{"../escape.txt": b"x"}, {"ok.bin": b"1", "/etc/../../escape": b"x"}]
)
def test_an_unpack_that_fails_leaves_nothing(tmp_path: Path, members: dict[str, bytes]) -> None:
    digest, data = _tar(members)
    models_dir = tmp_path / "model"
    name = ray_models.staged_name("m")
    with pytest.raises(tarfile.TarError):
        ray_models.unpack_staged(models_dir, name, digest, data)
    assert list(models_dir.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


def test_a_model_that_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    _, data = _tar({"a": b"1"})
    with pytest.raises(ValueError, match="does not match"):
        ray_models.unpack_staged(tmp_path, ray_models.staged_name("m"), "0" * 64, data)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["..", "../model", "x", "/tmp", "0" * 24 + "-" + "0" * 8 + "/.."])
def test_only_names_of_staged_models_are_touched(tmp_path: Path, name: str) -> None:
    (tmp_path / "model").mkdir()
    with pytest.raises(ValueError, match="not the name of a staged model"):
        ray_models.remove_staged(tmp_path / "model", name)
    digest, data = _tar({"a": b"1"})
    with pytest.raises(ValueError, match="not the name of a staged model"):
        ray_models.unpack_staged(tmp_path / "model", name, digest, data)
    assert (tmp_path / "model").is_dir()


class _Finder:
    def __init__(self, instance: PlacedInstance | None) -> None:
        self.instance = instance

    def placed(self, key: str) -> PlacedInstance | None:
        return self.instance


def _instance(lost: str | None) -> PlacedInstance:
    request = InstanceRequest("ep.r1.AllTraffic.i-0", "ep.r1.AllTraffic", "instance i-0", ())
    return PlacedInstance(request, 1, None, None, "127.0.0.3", "n" * 56, False, lost=lost)


def test_a_stage_on_an_instance_that_is_gone_fails_at_once_saying_why(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"w")
    lost = "its node 127.0.0.3 (Ray node nnnnnnnnnnnn) was lost: no answer"
    for finder, reason in (
        (_Finder(_instance(lost)), f"its instance is gone: {lost}"),
        (_Finder(None), "its instance is not placed on the Ray cluster"),
    ):
        staging = RayModelStaging(finder, "ep.r1.AllTraffic.i-0", "ep.c", 1 << 20)
        with pytest.raises(ModelStagingFailed) as failed:
            asyncio.run(staging.stage(tmp_path, "m.tar.gz"))
        assert str(failed.value) == reason
        asyncio.run(staging.remove("0" * 24 + "-" + "0" * 8))  # gone with it: nothing to do
