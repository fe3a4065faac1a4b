"""The log index's format: what the writer encodes, the readers decode, torn or foreign bytes
refused rather than misread."""

from __future__ import annotations

from pathlib import Path

from polyhost.logs.files import RotatingLog
from polyhost.logs.index import (
    HEADER_BYTES,
    RECORD_BYTES,
    header_bytes,
    index_base,
    index_path,
    index_records,
    read_index,
    read_index_base,
    record_bytes,
)


def test_header_and_records_round_trip() -> None:
    index = header_bytes(4096) + record_bytes(0, 1_700_000_000_000) + record_bytes(17, 5)
    assert len(index) == HEADER_BYTES + 2 * RECORD_BYTES
    assert index_base(index) == 4096
    assert list(index_records(index)) == [(0, 1_700_000_000_000), (17, 5)]


def test_a_torn_last_record_is_left_out() -> None:
    index = header_bytes(0) + record_bytes(3, 9) + record_bytes(8, 10)[:-1]
    assert list(index_records(index)) == [(3, 9)]


def test_foreign_or_short_bytes_have_no_base() -> None:
    assert index_base(b"") is None
    assert index_base(header_bytes(7)[:-1]) is None
    assert index_base(b"XXXX" + header_bytes(7)[4:]) is None


def test_the_writer_s_index_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    with RotatingLog(path, max_bytes=1 << 20, backups=1) as log:
        log.write(b"first line\nsecond line\n")
    assert index_path(path).is_file()
    assert read_index_base(path) == 0
    records = list(index_records(read_index(path, 1 << 20)))
    assert records and records[0][0] == 0


def test_a_missing_index_reads_as_nothing(tmp_path: Path) -> None:
    assert read_index(tmp_path / "absent.log", 1024) == b""
    assert read_index_base(tmp_path / "absent.log") is None
