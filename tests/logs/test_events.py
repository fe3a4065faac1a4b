"""Container logs read back as CloudWatch events, from files the real rotating writer made.

What holds: every complete line comes back once, in order, with the time it was written, across
rotations and whichever way a reader pages; a line still being written is no event yet; a line
split by a rotation comes back whole; positions (the tokens' substance) survive rotation.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from polyhost.logs.events import (
    MAX_EVENT_BYTES,
    LogSnapshot,
    Page,
    Window,
    open_log,
    read_backward,
    read_forward,
)
from polyhost.logs.files import RotatingLog, rotated_paths
from polyhost.logs.index import index_path

KiB = 1024
BIG = {"limit": 10_000, "max_bytes": 1 << 20, "scan_bytes": 1 << 30}


def line(number: int, tag: str = "line") -> bytes:
    return f"{tag} {number:05d} ".encode().ljust(60, b".") + b"\n"


def forward_all(path: Path, page_size: int) -> list[str]:
    """Every message, paging forward from the start `page_size` events at a time."""
    messages: list[str] = []
    position = 0
    while True:
        with open_log(path) as snapshot:
            page = read_forward(
                snapshot, position, Window(), limit=page_size, max_bytes=1 << 20, scan_bytes=1 << 30
            )
        messages += [e.message for e in page.events]
        if page.next == position:
            return messages
        position = page.next


def next_millisecond() -> None:
    """Wait (an event, not a duration) until the wall clock shows a later millisecond."""
    now = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 == now:
        time.sleep(0.0005)


def test_lines_come_back_in_order_across_rotations(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    with RotatingLog(path, max_bytes=KiB, backups=20) as log:
        for number in range(200):  # about 12 KiB: a dozen rotations
            log.write(line(number))
    assert path.with_name("container.log.10").exists()
    expected = [line(n).decode().rstrip("\n") for n in range(200)]
    assert forward_all(path, page_size=7) == expected
    with open_log(path) as snapshot:
        assert snapshot.end - snapshot.start == 200 * 61
        every = read_forward(snapshot, snapshot.start, Window(), **BIG)
        assert every.complete and every.next == snapshot.end
    assert [e.message for e in every.events] == expected


def test_a_position_names_the_same_line_after_the_files_rotate(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    with RotatingLog(path, max_bytes=KiB, backups=50) as log:
        for number in range(30):
            log.write(line(number))
        with open_log(path) as snapshot:
            first = read_forward(snapshot, 0, Window(), **{**BIG, "limit": 10})
        for number in range(30, 100):  # several rotations happen between the two reads
            log.write(line(number))
        with open_log(path) as snapshot:
            rest = read_forward(snapshot, first.next, Window(), **BIG)
            again = read_forward(
                snapshot, first.events[3].position, Window(), **{**BIG, "limit": 1}
            )
    assert [e.message for e in first.events + rest.events] == [
        line(n).decode().rstrip("\n") for n in range(100)
    ]
    assert again.events[0].message == first.events[3].message


def test_the_oldest_rotated_file_dropped_moves_the_start_not_the_positions(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    with RotatingLog(path, max_bytes=KiB, backups=2) as log:
        for number in range(20):
            log.write(line(number))
        with open_log(path) as snapshot:
            latest = read_backward(snapshot, snapshot.end, Window(), **{**BIG, "limit": 1})
        for number in range(20, 200):
            log.write(line(number))
    with open_log(path) as snapshot:
        assert snapshot.start > latest.events[0].position  # that line rotated out
        page = read_forward(snapshot, latest.events[0].position, Window(), **{**BIG, "limit": 1})
        # A position older than what is kept reads from the oldest line still there.
        assert page.events[0].position == snapshot.start
        assert page.events[0].message == line(
            200 - (snapshot.end - snapshot.start) // 61
        ).decode().rstrip("\n")


def test_paging_backward_from_the_end_meets_every_line_once(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    with RotatingLog(path, max_bytes=KiB, backups=30) as log:
        for number in range(120):
            log.write(line(number))
    seen: list[str] = []
    with open_log(path) as snapshot:
        position = snapshot.end
        while True:
            page = read_backward(snapshot, position, Window(), **{**BIG, "limit": 9})
            seen = [e.message for e in page.events] + seen
            assert len(page.events) <= 9
            if page.first == position:
                break
            position = page.first
    assert seen == [line(n).decode().rstrip("\n") for n in range(120)]


def test_a_line_without_its_newline_is_no_event_until_it_has_one(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    with RotatingLog(path, max_bytes=KiB, backups=2) as log:
        log.write(b"whole\npart")
        with open_log(path) as snapshot:
            page = read_forward(snapshot, 0, Window(), **BIG)
        assert [e.message for e in page.events] == ["whole"]
        assert page.next == len(b"whole\n")  # a reader goes on from the partial line
        log.write(b"ial and done\r\n\n")
        with open_log(path) as snapshot:
            rest = read_forward(snapshot, page.next, Window(), **BIG)
    assert [e.message for e in rest.events] == ["partial and done"]  # \r\n and empty line


def test_reading_backward_from_the_end_never_leaves_a_reader_inside_a_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "container.log"
    with RotatingLog(path, max_bytes=KiB, backups=2) as log:
        log.write(b"done\nhalf")
        with open_log(path) as snapshot:
            newest = read_backward(snapshot, snapshot.end, Window(), **BIG)
        assert [e.message for e in newest.events] == ["done"]
        assert newest.next == len(b"done\n")
        log.write(b" and whole\n")
        with open_log(path) as snapshot:
            rest = read_forward(snapshot, newest.next, Window(), **BIG)
    assert [e.message for e in rest.events] == ["half and whole"]


def test_a_line_split_by_rotation_comes_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    long_line = b"x" * 3000 + b" end\n"
    with RotatingLog(path, max_bytes=KiB, backups=5) as log:
        log.write(b"before\n")
        log.write(long_line)  # longer than a file: split over several
        log.write(b"after\n")
    assert sum(p.exists() for p in rotated_paths(path, 5)) >= 4
    assert forward_all(path, page_size=2) == ["before", long_line.decode().rstrip("\n"), "after"]


def test_a_line_longer_than_an_event_becomes_several(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    with RotatingLog(path, max_bytes=4 * MAX_EVENT_BYTES, backups=1) as log:
        log.write(b"y" * (MAX_EVENT_BYTES * 2 + 10) + b"\n")
    with open_log(path) as snapshot:
        page = read_forward(snapshot, 0, Window(), **BIG)
    assert [len(e.message) for e in page.events] == [MAX_EVENT_BYTES, MAX_EVENT_BYTES, 10]


def test_each_line_keeps_the_time_it_was_written(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    before = time.time_ns() // 1_000_000
    with RotatingLog(path, max_bytes=KiB, backups=10) as log:
        log.write(b"early one\nearly two\n")
        next_millisecond()
        log.write(b"late one\nla")
        next_millisecond()
        log.write(b"te two\n")  # began in the earlier millisecond: keeps that time
    after = time.time_ns() // 1_000_000
    with open_log(path) as snapshot:
        events = read_forward(snapshot, 0, Window(), **BIG).events
        early, late = events[0].timestamp, events[2].timestamp
        assert before <= early < late <= after
        assert [e.timestamp for e in events] == [early, early, late, late]
        from_late = read_forward(snapshot, snapshot.position_of_time(late), Window(), **BIG)
        assert [e.message for e in from_late.events] == ["late one", "late two"]
        only_early = read_forward(snapshot, 0, Window(end_ms=late), **BIG)
        assert [e.message for e in only_early.events] == ["early one", "early two"]
        newest_first = read_backward(snapshot, snapshot.end, Window(start_ms=late), **BIG)
        assert [e.message for e in newest_first.events] == ["late one", "late two"]


def test_limits_cut_a_page_at_a_line_boundary(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    with RotatingLog(path, max_bytes=1 << 20, backups=1) as log:
        for number in range(100):
            log.write(line(number))
    with open_log(path) as snapshot:
        by_count = read_forward(snapshot, 0, Window(), **{**BIG, "limit": 10})
        by_bytes = read_forward(snapshot, 0, Window(), **{**BIG, "max_bytes": 3 * (60 + 26)})
        by_scan = read_forward(snapshot, 0, Window(), **{**BIG, "scan_bytes": 61 * 5})
    assert len(by_count.events) == 10 and by_count.next == 10 * 61
    assert len(by_bytes.events) == 3 and by_bytes.next == 3 * 61
    assert len(by_scan.events) == 5 and by_scan.next == 5 * 61 and not by_scan.complete


def test_a_filter_keeps_only_matching_lines(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    with RotatingLog(path, max_bytes=KiB, backups=10) as log:
        for number in range(50):
            log.write(line(number, tag="odd" if number % 2 else "even"))
    with open_log(path) as snapshot:
        page = read_forward(snapshot, 0, Window(match=lambda m: m.startswith("odd")), **BIG)
    assert len(page.events) == 25 and all(e.message.startswith("odd") for e in page.events)


def test_a_log_that_was_never_written_is_empty(tmp_path: Path) -> None:
    with open_log(tmp_path / "missing.log") as snapshot:
        assert (snapshot.start, snapshot.end) == (0, 0)
        page: Page = read_backward(snapshot, 10**12, Window(), **BIG)
        assert page.events == [] and page.first == page.next == 0


def test_a_log_written_before_indexes_existed_is_read_with_its_file_time(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    path.write_bytes(b"from an older server\n")
    with RotatingLog(path, max_bytes=KiB, backups=2) as log:
        log.write(b"from this one\n")
    assert index_path(path).exists()
    snapshot: LogSnapshot
    with open_log(path) as snapshot:
        events = read_forward(snapshot, 0, Window(), **BIG).events
    assert [e.message for e in events] == ["from an older server", "from this one"]
    assert events[0].timestamp <= events[1].timestamp


@pytest.mark.parametrize("garbage", [b"", b"PHLI", b"not an index at all, just bytes!!"])
def test_a_damaged_index_costs_times_not_lines(tmp_path: Path, garbage: bytes) -> None:
    path = tmp_path / "container.log"
    with RotatingLog(path, max_bytes=KiB, backups=2) as log:
        log.write(b"one\ntwo\n")
    index_path(path).write_bytes(garbage)
    with open_log(path) as snapshot:
        events = read_forward(snapshot, 0, Window(), **BIG).events
    assert [e.message for e in events] == ["one", "two"]
