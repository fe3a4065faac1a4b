"""The time index kept beside each container log file: its format, its writer's encoders and
its readers' decoders, in one place so the two sides cannot drift apart.

A log file `container.log` (and each rotated `container.log.N`) has a sidecar
`container.log.idx` (`container.log.N.idx`) holding a header and fixed-size records, all
little-endian:

- header (16 bytes): `PHLI`, version (u32), and the log's *base*: how many bytes the container
  wrote before this file began, so that an absolute position (base + offset) names the same
  byte however often the files rotate (CloudWatch Logs' tokens are such positions);
- record (16 bytes): offset in this file of a line start (u64), and the time it was written in
  milliseconds since the epoch (u64). A record is written before the bytes it describes, only
  for writes in which a line starts, and only when the millisecond changed since the last one:
  a line's time is that of the last record at or before its start.

The writer is `files.RotatingLog`; the readers are `events.py` (CloudWatch Logs' events) and
the Ray backend's log shipping (positions across a node's rotated files).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

INDEX_SUFFIX = ".idx"
INDEX_MAGIC = b"PHLI"
INDEX_VERSION = 1
_HEADER = struct.Struct("<4sIQ")  # magic, version, base
_RECORD = struct.Struct("<QQ")  # offset of a line start in the file, unix time in ms
HEADER_BYTES = _HEADER.size
RECORD_BYTES = _RECORD.size


def index_path(path: Path) -> Path:
    """The sidecar index of a log file: `container.log.1` → `container.log.1.idx`."""
    return path.with_name(path.name + INDEX_SUFFIX)


def header_bytes(base: int) -> bytes:
    """A new index's header, for a file that begins `base` bytes into the container's output."""
    return _HEADER.pack(INDEX_MAGIC, INDEX_VERSION, base)


def record_bytes(offset: int, ms: int) -> bytes:
    """One record: a line starts at `offset` of the file, written at `ms` (epoch milliseconds)."""
    return _RECORD.pack(offset, ms)


def read_index(path: Path, max_bytes: int) -> bytes:
    """The first `max_bytes` of `path`'s index (empty when it has none): one bounded read."""
    try:
        with open(index_path(path), "rb") as handle:
            return handle.read(max_bytes)
    except OSError:
        return b""


def read_index_base(path: Path) -> int | None:
    """The base recorded in `path`'s index, or None when it has no valid index."""
    return index_base(read_index(path, HEADER_BYTES))


def index_base(index: bytes) -> int | None:
    """The base in an index's bytes, or None when they do not start with a valid header."""
    if len(index) < HEADER_BYTES:
        return None
    magic, version, base = _HEADER.unpack_from(index)
    return int(base) if magic == INDEX_MAGIC and version == INDEX_VERSION else None


def index_records(index: bytes) -> Iterator[tuple[int, int]]:
    """The (offset, ms) records of an index's bytes, a torn last record left out."""
    aligned = len(index) - (len(index) - HEADER_BYTES) % RECORD_BYTES
    return _RECORD.iter_unpack(index[HEADER_BYTES:aligned])
