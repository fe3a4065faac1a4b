"""Shipping a remote container's log to the server, a bounded slice per poll.

On a Ray node a container's output goes to a rotating log on that node (`logs/files.py`), as with
the process backend; the server keeps the container's real log file (the one the logs route,
CloudWatch Logs' API and FailureReasons read). The agent reads its node's log by *absolute*
position (the file's index base + offset), so rotation on the node never repeats or skips a
byte: a slice is read from whichever file holds the position, and when the position was rotated
away (the server fell behind by more than the node keeps) reading resumes at the oldest byte
still there.
"""

from __future__ import annotations

from pathlib import Path

from polyhost.logs.files import rotated_paths
from polyhost.logs.index import read_index_base

# The most bytes one poll ships per container: a chatty container cannot make a poll (and the
# server's write of it) arbitrarily long; what is left goes with the next polls.
SHIP_MAX_BYTES = 256 * 1024


def read_slice(path: Path, backups: int, position: int, limit: int) -> tuple[bytes, int]:
    """Up to `limit` bytes of the log from absolute `position`; returns them and the next one."""
    files: list[tuple[int, Path, int]] = []  # (base, file, size), oldest first
    for candidate in reversed(rotated_paths(path, backups)):
        try:
            size = candidate.stat().st_size
        except OSError:
            continue
        base = read_index_base(candidate)
        files.append((0 if base is None else base, candidate, size))
    if not files:
        return b"", position
    oldest = files[0][0]
    position = max(position, oldest)
    for base, candidate, size in files:
        if base <= position < base + size:
            try:
                with open(candidate, "rb") as handle:
                    handle.seek(position - base)
                    data = handle.read(limit)
            except OSError:
                return b"", position
            return data, position + len(data)
    return b"", position
