"""Container log files: how a stream is named, and every way of reading one.

Two readers share this module: `tail` gives the end of a log as text for a FailureReason, and
`read_chunk` serves byte ranges to the logs route so a client can follow a log by offset without
ever repeating or skipping a byte. CloudWatch Logs' API reads the same files as timestamped
events, across rotated files, through `events.py`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from polyhost.naming import log_group, log_stream


@dataclass(frozen=True)
class LogStream:
    """One container's log, named as SageMaker names its CloudWatch stream."""

    endpoint_name: str
    variant_name: str
    instance_id: str
    hostname: str
    path: Path

    @property
    def name(self) -> str:
        return log_stream(self.variant_name, self.instance_id, self.hostname)

    @property
    def group(self) -> str:
        return log_group(self.endpoint_name)


def tail(path: Path, max_chars: int = 600) -> str:
    """The end of a log file as text, for FailureReason messages; empty when unreadable."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_chars * 4))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    text = text.strip()
    if len(text) > max_chars:
        text = "…" + text[-max_chars:]
    return text


@dataclass(frozen=True)
class LogChunk:
    """Bytes `[offset, next_offset)` of a log whose size was `size` when it was read."""

    size: int
    offset: int
    next_offset: int
    text: str


def _utf8_start(data: bytes) -> int:
    """Skip continuation bytes a chunk may start with (an offset landed inside a character)."""
    skip = 0
    while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
        skip += 1
    return skip


def _utf8_end(data: bytes) -> int:
    """Length of `data` without a trailing incomplete UTF-8 sequence (the writer is mid-way)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:
            continue  # a continuation byte: look further back for the lead byte
        if byte < 0x80:
            return len(data)
        need = 2 if byte >= 0xC0 and byte < 0xE0 else 3 if byte < 0xF0 else 4
        return len(data) - back if back < need else len(data)
    return len(data)


def _tail_start(data: bytes, lines: int) -> int:
    """Where in `data` its last `lines` lines begin (a final newline ends a line)."""
    if lines == 0:
        return len(data)
    position = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(lines):
        position = data.rfind(b"\n", 0, position)
        if position < 0:
            return 0
    return position + 1


def read_chunk(path: Path, offset: int, limit: int, tail: int | None) -> LogChunk:
    """Read one chunk of a log file (blocking: callers with large limits run it in a thread).

    A missing file is an empty log: a container that has not started yet has written nothing.
    An offset past the end (the file was replaced) is clamped to the end; the client notices
    that `size` is below its own offset and starts again from 0.
    """
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if tail is not None:
                start = max(0, size - limit)
            elif offset < 0:
                start = max(0, size + offset)
            else:
                start = min(offset, size)
            handle.seek(start)
            data = handle.read(min(limit, size - start))
    except (FileNotFoundError, IsADirectoryError):
        return LogChunk(size=0, offset=0, next_offset=0, text="")
    # Reported size is what was measured; bytes appended meanwhile are read next time.
    if tail is not None:
        cut = _tail_start(data, tail)
        if cut == 0 and start > 0:
            cut = _utf8_start(data)
        data, start = data[cut:], start + cut
    elif start > 0 and offset < 0:
        skip = _utf8_start(data)
        data, start = data[skip:], start + skip
    end = _utf8_end(data)
    if end > 0:  # never trim to nothing, or a reader could wait forever on a broken byte
        data = data[:end]
    return LogChunk(
        size=size,
        offset=start,
        next_offset=start + len(data),
        text=data.decode("utf-8", "replace"),
    )
