"""A container's log as CloudWatch Logs events: lines with their times, at stable positions.

The writer (`logs/files.py`) keeps the container's bytes untouched in `container.log`
(rotated to `container.log.1`, ...) and, beside each file, an index of when lines started and
where the file begins in the container's whole output (its *base*). Here those files are read
back as one sequence of bytes addressed by absolute position (base + offset): a position names
the same byte however often the files rotate, so CloudWatch's paging tokens can be positions.

An event is a complete line (its newline removed, and a carriage return before it); a line that
has no newline yet is not an event until it does, so a reader never sees half a line that later
grows. A line longer than `MAX_EVENT_BYTES` becomes several events of at most that size (as an
agent shipping it to CloudWatch would cut it); empty lines are skipped (CloudWatch keeps none).
An event's timestamp is that of the index record at or before its start.

Every read is bounded by the caller's `scan_bytes`: a call stops at a line boundary once it has
looked at that many bytes and says where it got to, so no request scans a whole disk.
"""

from __future__ import annotations

import bisect
import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from polyhost.logs.index import index_base, index_records, read_index

MAX_EVENT_BYTES = 256 * 1024
BLOCK_BYTES = 64 * 1024
# Rotated files are looked for up to this many (`--log-backups` beyond it would not be read).
MAX_FILES = 64
# An index is at most a quarter of a log file; this caps what one read of it may cost.
MAX_INDEX_BYTES = 16 * 1024 * 1024
# How often opening a log's files is retried when a rotation happens meanwhile.
OPEN_ATTEMPTS = 5

Matcher = Callable[[str], bool]


@dataclass(frozen=True)
class LogEvent:
    """One event: where it starts in the stream, when it was written, what it says."""

    position: int
    timestamp: int
    message: str


@dataclass
class _Segment:
    fd: int
    base: int
    size: int


@dataclass
class LogSnapshot:
    """A log's files opened together: reads see them as they were when opened.

    Open file descriptors keep their files readable even if the writer rotates (renames) or
    drops them meanwhile, so one call reads one consistent history.
    """

    segments: list[_Segment] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)  # absolute line starts with a record
    times: list[int] = field(default_factory=list)  # their times, in ms
    rising: list[int] = field(default_factory=list)  # running maximum of `times`
    fallback_ms: int = 0  # the time of lines before the first record (a log without index)

    @property
    def start(self) -> int:
        return self.segments[0].base if self.segments else 0

    @property
    def end(self) -> int:
        last = self.segments[-1] if self.segments else None
        return last.base + last.size if last else 0

    @property
    def first_ms(self) -> int | None:
        return self.times[0] if self.times else None

    @property
    def last_ms(self) -> int | None:
        return self.rising[-1] if self.rising else None

    @property
    def stored_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def close(self) -> None:
        for segment in self.segments:
            with contextlib.suppress(OSError):
                os.close(segment.fd)
        self.segments = []

    def __enter__(self) -> LogSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def clamp(self, position: int) -> int:
        return min(max(position, self.start), self.end)

    def read(self, position: int, count: int) -> bytes:
        """Up to `count` bytes from absolute `position` (fewer only at the end)."""
        parts: list[bytes] = []
        index = max(bisect.bisect_right([s.base for s in self.segments], position) - 1, 0)
        while count > 0 and index < len(self.segments):
            segment = self.segments[index]
            offset = position - segment.base
            if 0 <= offset < segment.size:
                data = os.pread(segment.fd, min(count, segment.size - offset), offset)
                if not data:
                    break
                parts.append(data)
                position += len(data)
                count -= len(data)
            else:
                index += 1
        return b"".join(parts)

    def time_at(self, position: int) -> int:
        """When the line starting at `position` was written."""
        index = bisect.bisect_right(self.positions, position) - 1
        if index >= 0:
            return self.times[index]
        return self.times[0] if self.times else self.fallback_ms

    def position_of_time(self, ms: int) -> int:
        """The first indexed line start written at or after `ms` (the end when none is).

        Lines before it were written earlier (the running maximum keeps this true should the
        clock step back), so a reader from `ms` on may start there."""
        index = bisect.bisect_left(self.rising, ms)
        return self.positions[index] if index < len(self.positions) else self.end


def open_log(path: Path) -> LogSnapshot:
    """Open `path` and its rotated copies, oldest first; a missing log is an empty one."""
    for _ in range(OPEN_ATTEMPTS - 1):
        snapshot, consistent = _open_once(path)
        if consistent:
            return snapshot
        snapshot.close()  # a rotation moved files while they were opened: once more
    return _open_once(path)[0]


def _open_once(path: Path) -> tuple[LogSnapshot, bool]:
    opened: list[tuple[Path, int, bytes]] = []
    consistent = True
    try:
        for number in range(MAX_FILES):
            candidate = path if number == 0 else path.with_name(f"{path.name}.{number}")
            try:
                fd = os.open(candidate, os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                if number == 0:
                    continue  # no current file (yet), but maybe rotated ones
                break
            opened.append((candidate, fd, read_index(candidate, MAX_INDEX_BYTES)))
        for candidate, fd, _ in opened:
            try:
                consistent &= os.stat(candidate).st_ino == os.fstat(fd).st_ino
            except OSError:
                consistent = False
    except OSError:
        for _, fd, _ in opened:
            os.close(fd)
        return LogSnapshot(), False
    return _assemble(list(reversed(opened))), consistent


def _assemble(oldest_first: list[tuple[Path, int, bytes]]) -> LogSnapshot:
    snapshot = LogSnapshot()
    previous_end: int | None = None
    newest_mtime = 0
    for _, fd, index in oldest_first:
        stat = os.fstat(fd)
        newest_mtime = max(newest_mtime, stat.st_mtime_ns // 1_000_000)
        header_base = index_base(index)
        # Files follow each other without gaps, whatever a stale header says.
        base = (header_base or 0) if previous_end is None else previous_end
        segment = _Segment(fd=fd, base=base, size=stat.st_size)
        snapshot.segments.append(segment)
        previous_end = base + segment.size
        if header_base is None:
            continue
        for offset, ms in index_records(index):
            position = base + offset
            if offset >= segment.size:
                break  # written before its bytes: the bytes are not in this snapshot
            if snapshot.positions and position <= snapshot.positions[-1]:
                continue
            snapshot.positions.append(position)
            snapshot.times.append(ms)
            previous_max = snapshot.rising[-1] if snapshot.rising else 0
            snapshot.rising.append(max(previous_max, ms))
    snapshot.fallback_ms = newest_mtime
    return snapshot


# -- reading events ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """What a read keeps: times `[start_ms, end_ms)` and messages `match` accepts."""

    start_ms: int = 0
    end_ms: int | None = None
    match: Matcher | None = None

    def keeps(self, timestamp: int, message: str) -> bool:
        if timestamp < self.start_ms or (self.end_ms is not None and timestamp >= self.end_ms):
            return False
        return self.match is None or self.match(message)


@dataclass(frozen=True)
class Page:
    """Events read, and the positions that bound what was looked at."""

    events: list[LogEvent]
    first: int  # where the read began (forward) or the earliest position examined (backward)
    next: int  # where a forward read goes on (the line boundary after the last one examined)
    complete: bool  # every line up to the end of the snapshot was examined


def _lines(snapshot: LogSnapshot, position: int, stop: int) -> Iterator[tuple[int, int, bytes]]:
    """(start, end, bytes) of each event-sized piece of whole lines in `[position, stop)`."""
    buffer = b""
    used = 0  # bytes of `buffer` already handed out
    read_to = position
    while True:
        newline = buffer.find(b"\n", used, used + MAX_EVENT_BYTES + 1)
        if newline >= 0:
            piece, length = buffer[used:newline], newline + 1 - used
        elif len(buffer) - used >= MAX_EVENT_BYTES:
            piece, length = buffer[used : used + MAX_EVENT_BYTES], MAX_EVENT_BYTES
        else:
            if read_to >= stop:
                return  # what is left has no newline yet: not an event
            data = snapshot.read(read_to, min(BLOCK_BYTES, stop - read_to))
            if not data:
                return
            read_to += len(data)
            buffer = buffer[used:] + data
            used = 0
            continue
        start = read_to - len(buffer) + used
        yield start, start + length, piece
        used += length


def _event(snapshot: LogSnapshot, start: int, piece: bytes) -> LogEvent | None:
    if piece.endswith(b"\r"):
        piece = piece[:-1]
    if not piece:
        return None
    return LogEvent(start, snapshot.time_at(start), piece.decode("utf-8", "replace"))


def event_cost(event: LogEvent) -> int:
    """What an event counts against a response's byte cap (CloudWatch counts 26 bytes more)."""
    return len(event.message.encode("utf-8", "surrogatepass")) + 26


def read_forward(
    snapshot: LogSnapshot,
    position: int,
    window: Window,
    *,
    limit: int,
    max_bytes: int,
    scan_bytes: int,
) -> Page:
    """Events from `position` on, oldest first, until `limit`, `max_bytes` or `scan_bytes`."""
    position = snapshot.clamp(position)
    events: list[LogEvent] = []
    spent = 0
    at = position
    for start, end, piece in _lines(snapshot, position, snapshot.end):
        if len(events) >= limit or (end - position > scan_bytes and at > position):
            return Page(events, position, at, complete=False)
        event = _event(snapshot, start, piece)
        if event is not None and window.keeps(event.timestamp, event.message):
            cost = event_cost(event)
            if events and spent + cost > max_bytes:
                return Page(events, position, at, complete=False)
            events.append(event)
            spent += cost
        at = end
    return Page(events, position, at, complete=True)


def read_backward(
    snapshot: LogSnapshot,
    position: int,
    window: Window,
    *,
    limit: int,
    max_bytes: int,
    scan_bytes: int,
) -> Page:
    """The last events before `position`, oldest first, within `limit` and `max_bytes`.

    `first` is where a further backward read continues: the first event returned when older
    ones were left out, else the earliest position examined. `next` is where a forward read
    goes on: after the last whole line (a line still being written is read once complete)."""
    position = snapshot.clamp(position)
    begin = _line_start_before(snapshot, position, lines=limit + 1, scan_bytes=scan_bytes)
    pieces: list[LogEvent] = []
    after = begin  # the end of the last whole line: never inside one still being written
    for start, end, piece in _lines(snapshot, begin, position):
        after = end
        event = _event(snapshot, start, piece)
        if event is not None and window.keeps(event.timestamp, event.message):
            pieces.append(event)
    kept: list[LogEvent] = []
    spent = 0
    for event in reversed(pieces):
        cost = event_cost(event)
        if len(kept) >= limit or (kept and spent + cost > max_bytes):
            break
        kept.append(event)
        spent += cost
    kept.reverse()
    left_out = len(kept) < len(pieces)
    first = kept[0].position if left_out else begin
    return Page(kept, first, after, complete=first == snapshot.start)


def _line_start_before(snapshot: LogSnapshot, position: int, lines: int, scan_bytes: int) -> int:
    """A line start before `position` with about `lines` lines between (fewer at the start or
    once `scan_bytes` were looked at)."""
    floor = max(snapshot.start, position - scan_bytes)
    cursor = position - 1  # the newline that ends the line before `position`
    found = 0
    while cursor > floor:
        low = max(floor, cursor - BLOCK_BYTES)
        block = snapshot.read(low, cursor - low)
        index = len(block)
        while True:
            index = block.rfind(b"\n", 0, index)
            if index < 0:
                break
            found += 1
            if found >= lines:
                return low + index + 1
        cursor = low
    if floor == snapshot.start:
        return floor
    block = snapshot.read(floor, position - floor)  # begin after the first newline in reach
    newline = block.find(b"\n")
    return floor + newline + 1 if 0 <= newline < len(block) - 1 else floor
