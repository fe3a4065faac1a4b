"""Model data for Ray nodes: packed on the server, unpacked once per node by content hash, with
tarfile's data filter (nothing outside the model folder, no links out)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from polyhost.backends.ray import models as ray_models


def test_pack_and_unpack_round_trip_and_share_by_digest(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "weights.bin").write_bytes(b"\x00\x01" * 100)
    (model / "sub" / "code.py").write_text("print('hi')\n", encoding="utf-8")
    digest, data = ray_models.pack(model, max_bytes=1 << 20)
    assert digest == hashlib.sha256(data).hexdigest()
    assert ray_models.pack(model, max_bytes=1 << 20) == (digest, data)  # packs alike every time
    cache = tmp_path / "cache"
    assert ray_models.cached(cache, digest) is None
    unpacked = ray_models.unpack(cache, digest, data)
    assert unpacked == cache / digest
    assert (unpacked / "weights.bin").read_bytes() == b"\x00\x01" * 100
    assert (unpacked / "sub" / "code.py").read_text(encoding="utf-8") == "print('hi')\n"
    assert ray_models.cached(cache, digest) == unpacked
    assert ray_models.unpack(cache, digest, data) == unpacked  # a second agent: already there
    assert [p.name for p in cache.iterdir()] == [digest]  # no staging folder left behind


def test_pack_refuses_a_model_over_the_cap(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "big.bin").write_bytes(b"x" * 50_000)
    with pytest.raises(ray_models.ModelTooLarge):
        ray_models.pack(model, max_bytes=10_000)


def test_empty_model_folder_is_not_shipped(tmp_path: Path) -> None:
    assert ray_models.is_empty(tmp_path)
    (tmp_path / "f").write_text("x", encoding="utf-8")
    assert not ray_models.is_empty(tmp_path)


def _archive(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for info, content in members:
            archive.addfile(info, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def _file(name: str, content: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    return info, content


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


@pytest.mark.parametrize(
    "member",
    [
        _file("../escape.txt"),
        _link("out", "/etc/passwd", tarfile.SYMTYPE),
        _link("up", "../../outside", tarfile.SYMTYPE),
        _link("hard", "/etc/passwd", tarfile.LNKTYPE),
    ],
    ids=["dotdot", "symlink-absolute", "symlink-up", "hardlink-out"],
)
def test_unpack_refuses_anything_leaving_the_model_folder(
    tmp_path: Path, member: tuple[tarfile.TarInfo, bytes | None]
) -> None:
    data = _archive(_file("ok.txt"), member)
    digest = hashlib.sha256(data).hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(tarfile.TarError):
        ray_models.unpack(cache, digest, data)
    assert ray_models.cached(cache, digest) is None
    assert not (tmp_path / "escape.txt").exists()
    assert list(cache.iterdir()) == []  # the staging folder is gone too


def test_unpack_refuses_data_that_does_not_match_its_digest(tmp_path: Path) -> None:
    data = _archive(_file("ok.txt"))
    with pytest.raises(ValueError, match="does not match"):
        ray_models.unpack(tmp_path, "0" * 64, data)


def test_unpack_keeps_absolute_names_inside_the_model_folder(tmp_path: Path) -> None:
    data = _archive(_file(f"{tmp_path}/abs/escape.txt", b"inside"))
    digest = hashlib.sha256(data).hexdigest()
    unpacked = ray_models.unpack(tmp_path / "cache", digest, data)
    assert not (tmp_path / "abs").exists()
    (found,) = [p for p in unpacked.rglob("escape.txt")]
    assert found.read_bytes() == b"inside"
