"""Malicious and broken model archives are refused with a clear message, and nothing escapes.

Every case goes through `ArtifactStore.fetch_and_extract` (what the deployer calls), then the
test checks the refusal names the member and that nothing was written outside the cache, and
nothing half-extracted stayed inside it.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

from polyhost.modeldata.extract import ExtractLimits, extract_archive
from polyhost.modeldata.store import ArtifactError, ArtifactStore
from tests.support.archives import pax_bomb, zero_bomb

Member = tuple[tarfile.TarInfo, bytes | None]


def file_member(name: str, data: bytes = b"x") -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    return info, data


def link_member(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def special_member(name: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info, None


def write_tar(path: Path, members: list[Member], mode: Literal["w", "w:gz"] = "w:gz") -> Path:
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def snapshot(root: Path, skip: Path) -> set[str]:
    """Every path below `root` except the cache's own folder."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(root):
        if Path(folder) == skip or skip in Path(folder).parents:
            continue
        found.update(os.path.join(folder, name) for name in dirs + files)
    return found


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "cache", max_extracted_bytes=1 << 20, max_members=50)


CASES: dict[str, tuple[Callable[[Path], list[Member]], str]] = {
    "traversal": (
        lambda t: [file_member("ok.txt"), file_member("../escaped.txt")],
        "tar member '../escaped.txt' contains '..' (path traversal)",
    ),
    "nested traversal": (
        lambda t: [file_member("a/../../escaped.txt")],
        "tar member 'a/../../escaped.txt' contains '..'",
    ),
    "absolute path": (
        lambda t: [file_member(f"{t}/outside/abs.txt")],
        "has an absolute path",
    ),
    "symlink to /etc/passwd": (
        lambda t: [link_member("passwd", "/etc/passwd")],
        "tar member 'passwd' is a symbolic link to '/etc/passwd', an absolute path",
    ),
    "relative symlink out": (
        lambda t: [link_member("sub/up", "../../outside")],
        "tar member 'sub/up' is a symbolic link to '../../outside', outside the model folder",
    ),
    "symlink out through another symlink": (
        lambda t: [link_member("dir", "."), file_member("dir/ok.txt"), link_member("x", "dir/..")],
        "tar member 'x' is a symbolic link that resolves outside the model folder",
    ),
    "hardlink out": (
        lambda t: [link_member("hl", "../outside/secret", tarfile.LNKTYPE)],
        "tar member 'hl' is a hard link to '../outside/secret', outside the model folder",
    ),
    "hardlink absolute": (
        lambda t: [link_member("hl", "/etc/passwd", tarfile.LNKTYPE)],
        "tar member 'hl' is a hard link to '/etc/passwd', an absolute path",
    ),
    "character device": (
        lambda t: [special_member("null", tarfile.CHRTYPE)],
        "tar member 'null' is a device or FIFO",
    ),
    "block device": (
        lambda t: [special_member("disk", tarfile.BLKTYPE)],
        "tar member 'disk' is a device or FIFO",
    ),
    "fifo": (
        lambda t: [special_member("pipe", tarfile.FIFOTYPE)],
        "tar member 'pipe' is a device or FIFO",
    ),
    "tar bomb": (
        lambda t: [file_member("small.bin", b"a" * 1000), file_member("big.bin", bytes(2 << 20))],
        "extracts to more than the limit of 1048576 bytes (reached at member 'big.bin')",
    ),
    "too many members": (
        lambda t: [file_member(f"f{i}.txt") for i in range(51)],
        "it has more than 50 members",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malicious_archives_are_refused(store: ArtifactStore, tmp_path: Path, case: str) -> None:
    build, expected = CASES[case]
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("keep")
    archive = write_tar(tmp_path / "model.tar.gz", build(tmp_path))
    url = f"file://{archive}"
    before = snapshot(tmp_path, tmp_path / "cache")
    with pytest.raises(ArtifactError) as raised:
        store.fetch_and_extract(url, timeout_s=30)
    message = str(raised.value)
    assert message.startswith(f"Model data {url} was refused: ")
    assert expected in message
    assert snapshot(tmp_path, tmp_path / "cache") == before
    assert (tmp_path / "outside" / "secret").read_text() == "keep"
    assert list((tmp_path / "cache" / "models").iterdir()) == []
    assert list(store.work_dir.iterdir()) == []
    assert list((tmp_path / "cache" / "index").iterdir()) == []


def test_links_inside_the_model_are_fine(store: ArtifactStore, tmp_path: Path) -> None:
    archive = write_tar(
        tmp_path / "model.tar",
        [
            file_member("weights/model.pt", b"weights"),
            link_member("latest.pt", "weights/model.pt"),
            link_member("code/up.pt", "../weights/model.pt"),
            link_member("copy.pt", "weights/model.pt", tarfile.LNKTYPE),
            file_member("run.sh", b"#!/bin/sh\n"),
        ],
        mode="w",
    )
    folder = store.fetch_and_extract(f"file://{archive}", timeout_s=30)
    assert (folder / "latest.pt").read_bytes() == b"weights"
    assert (folder / "code" / "up.pt").read_bytes() == b"weights"
    assert (folder / "copy.pt").read_bytes() == b"weights"
    assert os.path.islink(folder / "latest.pt")


def test_setuid_bits_and_write_permissions_are_dropped(
    store: ArtifactStore, tmp_path: Path
) -> None:
    info, data = file_member("tool", b"#!/bin/sh\n")
    info.mode = 0o4777
    folder = store.fetch_and_extract(
        f"file://{write_tar(tmp_path / 'm.tar.gz', [(info, data)])}", timeout_s=30
    )
    mode = stat.S_IMODE((folder / "tool").stat().st_mode)
    assert mode & stat.S_ISUID == 0
    assert mode & 0o222 == 0  # shared by replicas: read-only
    assert mode & 0o100  # still executable
    assert stat.S_IMODE(folder.stat().st_mode) == 0o555


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"this is not an archive at all", "is not a valid tar archive"),
        (b"", "is not a valid tar archive"),
        (b"PK\x03\x04 a zip file", "is not a valid tar archive"),
    ],
)
def test_a_file_that_is_not_a_tar_is_a_clear_error(
    store: ArtifactStore, tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "model.tar.gz"
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=expected):
        store.fetch_and_extract(f"file://{path}", timeout_s=30)


def test_a_truncated_archive_is_a_clear_error(store: ArtifactStore, tmp_path: Path) -> None:
    archive = write_tar(tmp_path / "full.tar.gz", [file_member("a.bin", os.urandom(200_000))])
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[:50_000])
    with pytest.raises(ArtifactError, match="is corrupt or truncated"):
        store.fetch_and_extract(f"file://{cut}", timeout_s=30)
    assert list((tmp_path / "cache" / "models").iterdir()) == []
    assert list(store.work_dir.iterdir()) == []


# --- bombs, deadlines, cancellation ------------------------------------------------------------


def test_a_compression_bomb_is_refused_at_its_header(tmp_path: Path) -> None:
    """Bound: a 256 KiB archive declaring 256 MiB (1000x) is refused by the ratio guard (200x)
    before one byte of the member is written, although it is under the size cap."""
    store = ArtifactStore(tmp_path / "cache", max_extracted_bytes=1 << 30, max_ratio=200)
    archive = zero_bomb(tmp_path / "bomb.tar.gz", 256 << 20)
    with pytest.raises(ArtifactError) as raised:
        store.fetch_and_extract(f"file://{archive}", timeout_s=30)
    size = archive.stat().st_size
    assert str(raised.value) == (
        f"Model data file://{archive} was refused: its {size} bytes expand to more than 200 "
        f"times that (reached at member 'big.bin', {256 << 20} bytes in all), which marks a "
        "decompression bomb; if the model is genuine, raise --model-max-ratio."
    )
    assert list((tmp_path / "cache" / "models").iterdir()) == []
    assert list(store.work_dir.iterdir()) == []


def test_the_ratio_guard_spares_small_models(tmp_path: Path) -> None:
    """Under 16 MiB extracted, any ratio passes: a few KiB of zeros in a tiny archive is no bomb."""
    store = ArtifactStore(tmp_path / "cache", max_extracted_bytes=1 << 30, max_ratio=2)
    archive = write_tar(tmp_path / "m.tar.gz", [file_member("zeros.bin", bytes(1 << 20))])
    assert archive.stat().st_size * 2 < 1 << 20
    folder = store.fetch_and_extract(f"file://{archive}", timeout_s=30)
    assert (folder / "zeros.bin").stat().st_size == 1 << 20


def test_extraction_checks_its_deadline_within_one_member(tmp_path: Path) -> None:
    """Bound: the check runs for every 64 KiB read, so a cancelled or timed-out extraction of a
    single 64 MiB member stops having written at most a few MiB of it."""
    archive = zero_bomb(tmp_path / "bomb.tar.gz", 64 << 20)
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls > 20:
            raise ArtifactError("time is up")

    dest = tmp_path / "out"
    dest.mkdir()
    limits = ExtractLimits(max_bytes=1 << 30, max_members=10, check=check)
    with pytest.raises(ArtifactError, match="time is up"):
        extract_archive(archive, dest, limits, "file://bomb")
    written = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    assert written < 4 << 20


def test_a_huge_pax_header_is_not_read_into_memory(tmp_path: Path) -> None:
    """Bound: at most 1 MiB of header data is read before the archive is refused."""
    archive = pax_bomb(tmp_path / "pax.tar.gz", 64 << 20)
    store = ArtifactStore(tmp_path / "cache", max_extracted_bytes=1 << 30)
    with pytest.raises(ArtifactError, match="its tar stream is larger than its members account"):
        store.fetch_and_extract(f"file://{archive}", timeout_s=30)


@pytest.mark.parametrize("mode", ["w:bz2", "w:xz", "w:gz", "w"])
def test_every_supported_compression_extracts(tmp_path: Path, mode: str) -> None:
    store = ArtifactStore(tmp_path / "cache", max_extracted_bytes=1 << 20)
    archive = tmp_path / "m.tar"
    with tarfile.open(archive, mode) as tar:  # type: ignore[call-overload]
        for info, data in [file_member("a/b.txt", b"bee"), file_member("c.txt", b"sea")]:
            tar.addfile(info, io.BytesIO(data))
    folder = store.fetch_and_extract(f"file://{archive}", timeout_s=30)
    assert (folder / "a" / "b.txt").read_bytes() == b"bee"
    assert (folder / "c.txt").read_bytes() == b"sea"
