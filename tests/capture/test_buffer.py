"""The bounded queue between the invocation path and the writer (`capture/buffer.py`)."""

from __future__ import annotations

from polyhost.capture.buffer import CaptureBuffer
from polyhost.capture.record import Captured


def item(size: int) -> Captured:
    return Captured(
        target=None,  # type: ignore[arg-type]  (the buffer never looks at it)
        variant="v",
        at=0.0,
        request=b"x" * size,
        request_type=None,
        response=None,
        response_type=None,
        inference_id=None,
    )


def test_bounded_by_records_bytes_and_record_size() -> None:
    buffer = CaptureBuffer(max_records=3, max_bytes=100, max_record_bytes=60)
    assert not buffer.put(item(61))  # larger than one record may be
    assert buffer.put(item(60))
    assert not buffer.put(item(41))  # 101 bytes in all
    assert buffer.put(item(40))
    assert buffer.put(item(0))
    assert not buffer.put(item(0))  # the fourth record
    assert len(buffer) == 3 and buffer.queued_bytes == 100
    assert [len(i.request or b"") for i in buffer.take()] == [60, 40, 0]
    assert len(buffer) == 0 and buffer.queued_bytes == 0
    assert buffer.put(item(60))  # room again


def test_a_quarter_full_wakes_the_writer() -> None:
    buffer = CaptureBuffer(max_records=8, max_bytes=1000, max_record_bytes=1000)
    buffer.put(item(1))
    assert not buffer.wake.is_set()
    buffer.put(item(1))
    assert buffer.wake.is_set()
