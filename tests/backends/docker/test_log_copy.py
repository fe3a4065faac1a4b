"""The log follower: a container's output into its rotating log file, bounded in rate."""

from __future__ import annotations

from pathlib import Path

from polyhost.backends.docker.log_copy import LogFollower
from polyhost.logs.files import RotatingLog


def follow(tmp_path: Path, chunks: list[bytes], **kwargs: object) -> tuple[LogFollower, str]:
    logfile = RotatingLog(tmp_path / "container.log", 1 << 20, 1)
    follower = LogFollower(iter(chunks), logfile, "c", **kwargs)  # type: ignore[arg-type]
    follower.start()
    assert follower.wait(30)
    return follower, (tmp_path / "container.log").read_text()


def test_output_is_copied_and_the_ending_explained(tmp_path: Path) -> None:
    follower, text = follow(
        tmp_path, [b"line one\n", b"no newline"], epilogue=lambda: "it went over its limit"
    )
    assert text == "line one\nno newline\n[polyhost: it went over its limit]\n"
    assert follower.done and follower.dropped_bytes == 0


def test_a_flood_is_cut_and_the_gap_marked(tmp_path: Path) -> None:
    flood = [b"x" * 1000 + b"\n"] * 50
    follower, text = follow(tmp_path, flood, rate_bytes_s=1, burst_bytes=5000)
    assert follower.dropped_bytes > 0
    assert f"[polyhost: {follower.dropped_bytes} bytes dropped]" in text
    assert len(text) < 10_000


def test_a_failing_stream_ends_the_follower(tmp_path: Path) -> None:
    def broken() -> object:
        yield b"before\n"
        raise ConnectionError("daemon went away")

    logfile = RotatingLog(tmp_path / "container.log", 1 << 20, 1)
    follower = LogFollower(broken(), logfile, "c")  # type: ignore[arg-type]
    follower.start()
    assert follower.wait(30)
    assert (tmp_path / "container.log").read_text() == "before\n"
