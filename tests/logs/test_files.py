"""Container logs: rotated by size, rate-limited at the reader, and still followable by offset.

The bound held: at most `(log_backups + 1) * log_max_bytes` bytes of log per container on disk,
however much the container prints, and a follower whose offset passes the size of the rotated
file starts again from 0.
"""

from __future__ import annotations

import asyncio
import os
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyhost.backends.process.backend import ProcessContainer
from polyhost.logs.files import RotatingLog, rotated_paths
from polyhost.logs.pump import LogPump
from polyhost.logs.streams import read_chunk
from tests.backends.launch import FAULTY, backend_for, launch_spec, wait_for

KiB = 1024


def lines(count: int, width: int = 100, tag: str = "") -> bytes:
    return b"".join(f"{tag}{i:06d}".encode().ljust(width - 1, b".") + b"\n" for i in range(count))


def disk_use(path: Path, backups: int) -> int:
    return sum(p.stat().st_size for p in rotated_paths(path, backups + 3) if p.exists())


def test_rotation_keeps_the_newest_lines_within_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    with RotatingLog(path, max_bytes=4 * KiB, backups=2) as log:
        for start in range(0, 500, 7):  # many writes of several lines each
            log.write(lines(7, tag=f"w{start:03d}-"))
    files = rotated_paths(path, 2)
    assert all(p.exists() for p in files)
    assert not path.with_name("container.log.3").exists()
    assert disk_use(path, 2) <= 3 * 4 * KiB
    for rotated in files[1:]:
        text = rotated.read_bytes()
        assert len(text) <= 4 * KiB and text.endswith(b"\n")  # cut at a line break
    # Newest last: .2 then .1 then the current file, in write order.
    joined = b"".join(p.read_bytes() for p in reversed(files))
    assert joined.endswith(lines(7, tag="w497-"))
    numbers = [line[:4] for line in joined.splitlines()]
    assert numbers == sorted(numbers)


def test_a_line_longer_than_a_file_is_split_and_no_backups_means_one_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "container.log"
    with RotatingLog(path, max_bytes=2 * KiB, backups=0) as log:
        log.write(b"a" * (5 * KiB))
        log.write(b"tail\n")
    # One log and its index (when each line was written): nothing rotated out.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["container.log", "container.log.idx"]
    assert path.stat().st_size <= 2 * KiB
    assert path.read_bytes().endswith(b"tail\n")


def test_an_existing_log_is_appended_to_then_rotated(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    path.write_bytes(b"earlier run\n")
    with RotatingLog(path, max_bytes=4 * KiB, backups=1) as log:
        log.write(b"this run\n")
        assert path.read_bytes() == b"earlier run\nthis run\n"
        log.write(lines(50))
    assert path.with_name("container.log.1").read_bytes().startswith(b"earlier run\n")


def test_a_follower_past_the_rotated_size_starts_again_from_zero(tmp_path: Path) -> None:
    path = tmp_path / "container.log"
    with RotatingLog(path, max_bytes=4 * KiB, backups=2) as log:
        log.write(lines(30, tag="a"))
        first = read_chunk(path, 0, 64 * KiB, None)
        assert first.text.startswith("a000000")
        offset = first.next_offset
        log.write(lines(20, tag="b"))  # rotates: the current file is now small
        after = read_chunk(path, offset, 64 * KiB, None)
        assert after.size < offset  # what the client sees ...
        again = read_chunk(path, 0, 64 * KiB, None)  # ... and where it starts over
        assert again.offset == 0 and "b000019" in again.text


def pump_through(data: list[bytes], rate: float, burst: float, tmp_path: Path) -> LogPump:
    read_fd, write_fd = os.pipe()
    log = RotatingLog(tmp_path / "container.log", max_bytes=1 << 20, backups=1)
    pump = LogPump(read_fd, log, "test", rate_bytes_s=rate, burst_bytes=burst)
    pump.start()
    for chunk in data:
        os.write(write_fd, chunk)
    os.close(write_fd)
    return pump


def test_output_past_the_rate_is_dropped_counted_and_marked_once(tmp_path: Path) -> None:
    burst = 8 * KiB
    flood = [lines(40)] * 20  # 80 KiB at once against a bucket of 8 KiB refilled at 1 KiB/s
    pump = pump_through(flood, rate=KiB, burst=burst, tmp_path=tmp_path)
    assert asyncio.run(wait_done(pump))
    text = (tmp_path / "container.log").read_bytes()
    assert pump.dropped_bytes > 0
    marker = f"[polyhost: {pump.dropped_bytes} bytes dropped]\n".encode()
    assert text.count(b"[polyhost: ") == 1 and text.endswith(marker)
    assert len(text) - len(marker) <= burst + KiB  # what got through: the burst, plus refill


def test_output_within_the_rate_passes_whole(tmp_path: Path) -> None:
    data = [lines(10, tag=str(i)) for i in range(5)]
    pump = pump_through(data, rate=1 << 20, burst=1 << 20, tmp_path=tmp_path)
    assert asyncio.run(wait_done(pump))
    assert (tmp_path / "container.log").read_bytes() == b"".join(data)
    assert pump.dropped_bytes == 0


async def wait_done(pump: LogPump) -> bool:
    await wait_for(lambda: pump.done, "the pump to reach the end of its pipe")
    return pump.drained()


def test_a_stray_writer_does_not_keep_the_pump_forever(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    pump = LogPump(read_fd, RotatingLog(tmp_path / "x.log", 1 << 20, 1), "stray")
    pump.start()
    try:
        os.write(write_fd, b"hello\n")
        asyncio.run(wait_for(pump.drained, "the line to be written"))
        assert (tmp_path / "x.log").read_bytes() == b"hello\n"
        assert not pump.done  # the pipe is still open at the other end
        pump.stop()
        asyncio.run(wait_for(lambda: pump.done, "the pump to end"))
    finally:
        os.close(write_fd)


def test_a_flooding_container_stays_within_its_disk_bound_and_keeps_serving(
    tmp_path: Path,
) -> None:
    max_bytes, backups = 64 * KiB, 2
    backend = backend_for(
        tmp_path, {"test/faulty": FAULTY}, log_max_bytes=max_bytes, log_backups=backups
    )
    bound = (backups + 1) * max_bytes

    async def scenario() -> None:
        spec = launch_spec(tmp_path, "test/faulty", {"FAULT": "flood-stdout"})
        handle = await backend.start(spec)
        assert isinstance(handle, ProcessContainer)
        try:
            oldest = spec.log_path.with_name("container.log.2")
            await wait_for(oldest.exists, "the log to have rotated twice")
            await wait_for(lambda: handle.log_pump.dropped_bytes > 0, "the rate limit to drop")
            seen = [disk_use(spec.log_path, backups)]
            for _ in range(10):  # the container floods on; the bound holds throughout
                await asyncio.sleep(0.1)
                seen.append(disk_use(spec.log_path, backups))
            assert max(seen) <= bound, seen
            assert not spec.log_path.with_name("container.log.3").exists()
            # The flood slows the container's writes, never its serving.
            answer = await asyncio.to_thread(ping, spec.port)
            assert answer == 200
        finally:
            await handle.stop(1.0)
        text = b"".join(p.read_bytes() for p in rotated_paths(spec.log_path, backups))
        assert b"[polyhost: " in text and b" bytes dropped]\n" in text

    asyncio.run(scenario())


def ping(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=10) as answer:
        return int(answer.status)


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    """Every pump a test starts ends with it (a pump is a thread per container)."""
    before = {t.name for t in threading.enumerate()}
    yield
    left = [t for t in threading.enumerate() if t.name.startswith("log:") and t.name not in before]
    for thread in left:
        thread.join(timeout=5)
    assert not [t.name for t in left if t.is_alive()]
