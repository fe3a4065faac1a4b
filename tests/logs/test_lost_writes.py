"""A container's log when the disk stops taking writes: the cut line is finished and marked.

The disk is simulated where the log touches it (`os.write`, for the log file only): it
takes a given number of bytes more, then answers ENOSPC, as a full disk does (a short write,
then the error). tests/reliability/test_state_disk_full.py does the same on a real full tmpfs.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from polyhost.logs.files import RotatingLog
from polyhost.logs.pump import ThrottledLog


class Disk:
    """`os.write` for the log file: `room` bytes more, then ENOSPC (None: unlimited)."""

    def __init__(self, log_path: Path) -> None:
        self.room: int | None = None
        self._real = os.write
        self._log_path = log_path

    def write(self, fd: int, data: bytes | memoryview) -> int:
        if self.room is None or os.readlink(f"/proc/self/fd/{fd}") != str(self._log_path):
            return self._real(fd, data)
        if self.room == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = self._real(fd, bytes(data[: self.room]))
        self.room -= written
        return written


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Disk:
    fake = Disk(tmp_path / "container.log")
    monkeypatch.setattr(os, "write", fake.write)
    return fake


def sink(tmp_path: Path) -> ThrottledLog:
    return ThrottledLog(RotatingLog(tmp_path / "container.log", 1 << 20, 1), 1e9, 1e9)


def test_a_cut_line_is_finished_by_a_marker_once_the_disk_takes_writes(
    tmp_path: Path, disk: Disk
) -> None:
    log = sink(tmp_path)
    log.write(b"before\n")
    disk.room = 4
    log.write(b"cut here\n")  # "cut " reaches the file
    log.write(b"lost too\n")  # nothing does
    assert (tmp_path / "container.log").read_bytes() == b"before\ncut "
    assert not log.file.at_line_start
    disk.room = None
    log.write(b"after\n")
    log.file.close()
    assert (tmp_path / "container.log").read_bytes() == (
        b"before\ncut \n[polyhost: 14 bytes not written to this log: No space left on device]\n"
        b"after\n"
    )
    assert log.dropped_bytes == 14


def test_a_marker_cut_in_its_turn_is_written_whole_later(tmp_path: Path, disk: Disk) -> None:
    log = sink(tmp_path)
    disk.room = 0
    log.write(b"gone\n")
    disk.room = 5
    log.write(b"also gone\n")  # the marker's first bytes reach the file, then ENOSPC
    disk.room = None
    log.flush_marker()  # as the pump does when the pipe closes
    log.file.close()
    text = (tmp_path / "container.log").read_bytes()
    assert text == (
        b"[poly\n[polyhost: 15 bytes not written to this log: No space left on device]\n"
    )


def test_a_line_not_cut_needs_no_newline(tmp_path: Path, disk: Disk) -> None:
    log = sink(tmp_path)
    log.write(b"whole\n")
    disk.room = 0
    log.write(b"gone\n")
    disk.room = None
    log.write(b"next\n")
    log.file.close()
    assert (tmp_path / "container.log").read_bytes() == (
        b"whole\n[polyhost: 5 bytes not written to this log: No space left on device]\nnext\n"
    )
