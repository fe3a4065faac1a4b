"""A container's log file, rotated by size so its disk use is bounded whatever the container does.

The log is `container.log`; when writing would take it past `max_bytes` it is renamed
`container.log.1` (an older `.1` becomes `.2`, and so on up to `backups`; the oldest is
dropped) and a fresh `container.log` is started. At most `(backups + 1) * max_bytes` bytes
of log are on disk per container, however much the container prints (plus the small index
described below).

A rotation cuts at the last line break that fits, so a rotated file ends with a whole line;
a single line longer than `max_bytes` is split. Readers (`logs/streams.py`) follow the current
file by byte offset: after a rotation they see its size drop below their offset and start again
from 0, which is the behaviour they already have for a replaced file.

Writes go straight to the file descriptor (no buffering), so whatever was written is visible to
a reader at once: a FailureReason quotes the end of the log right after a container exits.

When each line was written is kept beside the log, not in it: the log holds the container's
bytes exactly as printed (so `tail`, the logs route and `polyhost logs` show them untouched), and
a small sidecar index `container.log.idx` (rotated with its log: `container.log.1.idx`, ...)
says where each line started and when; its format, written here and read by `events.py` and the
Ray node's log shipping, lives in one place: `index.py`.

A write the disk does not take (ENOSPC, EFBIG) may have written part of its bytes: the file
then ends inside a line, and `at_line_start` says so (as it does after any write), so the
writer above (`pump.ThrottledLog`) can finish that line with a marker of its own before the
next output, instead of gluing the next line onto the cut one. `bytes_written` counts what
reached the file, so it can also say how much was lost.

The index of a file is capped at a quarter of `max_bytes` (and at least `MIN_MAX_BYTES`); when
full, the log rotates at the next line start, so the per-container bound on disk is
`(backups + 1) * max_bytes * 5 / 4` plus a header and a record per file.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from polyhost.logs.index import (
    RECORD_BYTES,
    header_bytes,
    index_path,
    read_index_base,
    record_bytes,
)

# Below this, rotation would cut nearly every line; a setting smaller than this is raised to it.
MIN_MAX_BYTES = 1024


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def rotated_paths(path: Path, backups: int) -> list[Path]:
    """The current log and its rotated copies, newest first: `x.log`, `x.log.1`, `x.log.2`."""
    return [path, *(path.with_name(f"{path.name}.{index}") for index in range(1, backups + 1))]


class RotatingLog:
    """Append-only, size-rotated log file; used by one writer thread (not thread-safe)."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self._path = path
        self._max_bytes = max(max_bytes, MIN_MAX_BYTES)
        self._backups = max(backups, 0)
        self._max_index = max(self._max_bytes // 4, MIN_MAX_BYTES)
        self._fd = self._open(truncate=False)
        self._size = os.fstat(self._fd).st_size
        self._at_line_start = self._size == 0 or self._last_byte() == b"\n"
        self.bytes_written = 0  # of the data given to `write`, over this object's life
        self._last_ms = -1
        self._index_fd = -1
        self._index_size = 0
        self._open_index()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def at_line_start(self) -> bool:
        """True when the next byte written starts a line (for marker lines of our own)."""
        return self._at_line_start

    def _open(self, truncate: bool) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        if truncate:
            flags |= os.O_TRUNC
        return os.open(self._path, flags, 0o640)

    def _open_index(self) -> None:
        """Open this file's index, starting a new one when it is missing, invalid or stale."""
        base = read_index_base(self._path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        if base is None or self._size == 0:
            if base is None:
                base = self._base_after_backup()
            self._index_fd = os.open(index_path(self._path), flags | os.O_TRUNC, 0o640)
            self._index_size = 0
            self._write_index(header_bytes(base))
        else:
            self._index_fd = os.open(index_path(self._path), flags, 0o640)
            self._index_size = os.fstat(self._index_fd).st_size
        self._base = base

    def _base_after_backup(self) -> int:
        """Where a log without an index begins: after its newest backup, if that one has one."""
        backup = self._path.with_name(f"{self._path.name}.1")
        base = read_index_base(backup)
        if base is None:
            return 0
        try:
            return base + backup.stat().st_size
        except OSError:
            return 0

    def _write_index(self, record: bytes) -> None:
        written = os.write(self._index_fd, record)
        self._index_size += written
        if written != len(record):  # a full disk: a torn record is ignored by readers
            raise OSError(28, "short write to the log index")

    def _record_line_start(self, data: bytes) -> None:
        """Index the first line that starts in `data` (about to be written at `self._size`)."""
        if self._at_line_start:
            start = 0
        else:
            newline = data.find(b"\n")
            if newline < 0 or newline == len(data) - 1:
                return  # no line starts inside this write
            start = newline + 1
        now = _now_ms()
        if now == self._last_ms or self._index_size + RECORD_BYTES > self._max_index:
            return
        self._write_index(record_bytes(self._size + start, now))
        self._last_ms = now

    def _last_byte(self) -> bytes:
        try:
            with open(self._path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                return handle.read(1)
        except OSError:
            return b""

    def write(self, data: bytes) -> None:
        """Append `data`, rotating as often as needed; OSError (a full disk) propagates."""
        if self._fd < 0:  # a rotation failed to open the new file: try again now
            self._fd = self._open(truncate=False)
            self._size = os.fstat(self._fd).st_size
        if self._index_fd < 0:
            self._open_index()
        if self._index_size + RECORD_BYTES > self._max_index and self._at_line_start:
            self._rotate()  # the index is full: start a new file (and index) at this line
        while data:
            room = self._max_bytes - self._size
            if len(data) <= room:
                self._write_all(data)
                return
            cut = data.rfind(b"\n", 0, max(room, 0)) + 1  # 0: no whole line fits
            if cut == 0 and self._size == 0:
                cut = room  # one line longer than a whole file: split it
            if cut:
                self._write_all(data[:cut])
                data = data[cut:]
            self._rotate()

    def _write_all(self, data: bytes) -> None:
        self._record_line_start(data)
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                self._size += written
                self.bytes_written += written
                view = view[written:]
        finally:
            done = len(data) - len(view)
            if done:  # after a short write too: the file may now end inside a line
                self._at_line_start = data[done - 1] == 0x0A

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        self._close_index()
        next_base = self._base + self._size
        if self._backups > 0:
            paths = rotated_paths(self._path, self._backups)
            for older, newer in zip(reversed(paths[1:]), reversed(paths[:-1]), strict=True):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(index_path(newer), index_path(older))
                with contextlib.suppress(FileNotFoundError):
                    os.replace(newer, older)
        self._fd = self._open(truncate=True)
        self._size = 0
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC | os.O_CLOEXEC
        self._index_fd = os.open(index_path(self._path), flags, 0o640)
        self._index_size = 0
        self._last_ms = -1
        self._base = next_base
        self._write_index(header_bytes(next_base))

    def _close_index(self) -> None:
        if self._index_fd >= 0:
            os.close(self._index_fd)
            self._index_fd = -1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._close_index()

    def __enter__(self) -> RotatingLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
