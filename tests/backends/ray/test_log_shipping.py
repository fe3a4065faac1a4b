"""Shipping a remote container's log by absolute position, across the node's rotations."""

from __future__ import annotations

from pathlib import Path

from polyhost.backends.ray.log_shipping import read_slice
from polyhost.logs.files import MIN_MAX_BYTES, RotatingLog


def _lines(count: int, width: int = 100) -> list[bytes]:
    return [f"{i:04d} ".encode() + b"x" * (width - 6) + b"\n" for i in range(count)]


def test_every_byte_is_shipped_once_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    lines = _lines(60)
    log = RotatingLog(path, MIN_MAX_BYTES * 2, backups=5)
    shipped = b""
    position = 0
    for index, line in enumerate(lines):
        log.write(line)
        if index % 7 == 0:  # the server polls now and then, a bounded slice each time
            data, position = read_slice(path, 5, position, 300)
            shipped += data
    log.close()
    while True:
        data, position = read_slice(path, 5, position, 300)
        if not data:
            break
        shipped += data
    assert shipped == b"".join(lines)
    assert path.with_name("container.log.1").exists()  # it did rotate


def test_a_position_rotated_away_resumes_at_the_oldest_byte_kept(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    log = RotatingLog(path, MIN_MAX_BYTES, backups=1)
    lines = _lines(50)
    for line in lines:
        log.write(line)
    log.close()
    data, position = read_slice(path, 1, 0, 1 << 20)
    assert data and data != b"".join(lines)[: len(data)]  # the start was dropped on the node
    assert b"".join(lines).find(data) > 0
    rest, end = read_slice(path, 1, position, 1 << 20)
    assert b"".join(lines).endswith(data + rest)
    assert read_slice(path, 1, end, 1 << 20) == (b"", end)


def test_no_log_yet_ships_nothing(tmp_path: Path) -> None:
    assert read_slice(tmp_path / "container.log", 3, 0, 100) == (b"", 0)
