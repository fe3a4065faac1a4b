"""A container's log file, rotated by size so its disk use is bounded whatever the container does.

The log is `container.log`; when writing would take it past `max_bytes` it is renamed
`container.log.1` (an older `.1` becomes `.2`, and so on up to `backups`; the oldest is
dropped) and a fresh `container.log` is started. At most `(backups + 1) * max_bytes` bytes
are on disk per container, however much the container prints.

A rotation cuts at the last line break that fits, so a rotated file ends with a whole line;
a single line longer than `max_bytes` is split. Readers (`deploy/logs.py`) follow the current
file by byte offset: after a rotation they see its size drop below their offset and start again
from 0, which is the behaviour they already have for a replaced file.

Writes go straight to the file descriptor (no buffering), so whatever was written is visible to
a reader at once: a FailureReason quotes the end of the log right after a container exits.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

# Below this, rotation would cut nearly every line; a setting smaller than this is raised to it.
MIN_MAX_BYTES = 1024


def rotated_paths(path: Path, backups: int) -> list[Path]:
    """The current log and its rotated copies, newest first: `x.log`, `x.log.1`, `x.log.2`."""
    return [path, *(path.with_name(f"{path.name}.{index}") for index in range(1, backups + 1))]


class RotatingLog:
    """Append-only, size-rotated log file; used by one writer thread (not thread-safe)."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self._path = path
        self._max_bytes = max(max_bytes, MIN_MAX_BYTES)
        self._backups = max(backups, 0)
        self._fd = self._open(truncate=False)
        self._size = os.fstat(self._fd).st_size
        self._at_line_start = self._size == 0 or self._last_byte() == b"\n"

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
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            self._size += written
            view = view[written:]
        self._at_line_start = data.endswith(b"\n")

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = -1
        if self._backups > 0:
            paths = rotated_paths(self._path, self._backups)
            for older, newer in zip(reversed(paths[1:]), reversed(paths[:-1]), strict=True):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(newer, older)
        self._fd = self._open(truncate=True)
        self._size = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> RotatingLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
