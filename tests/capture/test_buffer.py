"""The bounded queue between the invocation path and the writer (`capture/buffer.py`)."""

from __future__ import annotations

import gc

from polyhost.capture.buffer import CaptureBuffer
from polyhost.capture.config import CaptureTarget, capture_target
from polyhost.capture.record import Row
from polyhost.control.seam import DataCaptureSpec, EndpointSpec, VariantSpec


def target(name: str = "ep") -> CaptureTarget:
    spec = EndpointSpec(
        endpoint_name=name,
        endpoint_arn=f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{name}",
        endpoint_config_name="cfg",
        variants=(VariantSpec("v", "m", (), "Serial"),),
        revision=1,
        data_capture=DataCaptureSpec("s3://bucket/capture", 100),
    )
    made = capture_target(spec)
    assert made is not None
    return made


TARGET = target()


def item(size: int, serial: int = TARGET.serial) -> Row:
    return (serial, "v", 0.0, b"x" * size, None, None, None, None)


def put(buffer: CaptureBuffer, size: int) -> bool:
    return buffer.put(TARGET, item(size), size)


def test_bounded_by_records_bytes_and_record_size() -> None:
    buffer = CaptureBuffer(max_records=3, max_bytes=100, max_record_bytes=60)
    assert not put(buffer, 61)  # larger than one record may be
    assert put(buffer, 60)
    assert not put(buffer, 41)  # 101 bytes in all
    assert put(buffer, 40)
    assert put(buffer, 0)
    assert not put(buffer, 0)  # the fourth record
    assert len(buffer) == 3 and buffer.queued_bytes == 100
    rows, targets, size = buffer.take()
    assert [len(row[3] or b"") for row in rows] == [60, 40, 0]
    assert targets == {TARGET.serial: TARGET} and size == 100
    assert len(buffer) == 0 and buffer.queued_bytes == 0
    assert buffer.take() == ([], {}, 0)
    assert put(buffer, 60)  # room again


def test_a_quarter_full_wakes_the_writer() -> None:
    buffer = CaptureBuffer(max_records=8, max_bytes=1000, max_record_bytes=1000)
    put(buffer, 1)
    assert not buffer.wake.is_set()
    put(buffer, 1)
    assert buffer.wake.is_set()  # a quarter of the records
    buffer.wake.clear()
    buffer.take()
    put(buffer, 300)
    assert buffer.wake.is_set()  # a quarter of the bytes


def test_a_replaced_target_is_taken_with_its_rows() -> None:
    """Rows name their target by serial; the buffer hands over the very targets they were
    taken under, even once an update has replaced them."""
    old, new = target(), target()
    assert old.serial != new.serial
    buffer = CaptureBuffer(max_records=8, max_bytes=1000, max_record_bytes=1000)
    buffer.put(old, item(1, old.serial), 1)
    buffer.put(new, item(1, new.serial), 1)
    rows, targets, _ = buffer.take()
    assert [row[0] for row in rows] == [old.serial, new.serial]
    assert targets == {old.serial: old, new.serial: new}


def test_queued_rows_add_nothing_to_what_the_collector_tracks() -> None:
    """Rows are tuples of atomic values: once a collection has seen them, the collector
    stops tracking them, so a full buffer does not make the event loop's collections longer."""
    buffer = CaptureBuffer(max_records=100, max_bytes=10**6, max_record_bytes=1000)
    put(buffer, 10)
    gc.collect()
    rows, _, _ = buffer.take()
    assert not gc.is_tracked(rows[0])
