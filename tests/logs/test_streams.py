"""Reading container log files: chunks that never split a character, and the failure tail."""

from __future__ import annotations

from pathlib import Path

from polyhost.logs.streams import read_chunk, tail


def test_a_chunk_never_splits_a_character(tmp_path: Path) -> None:
    path = tmp_path / "utf8.log"
    path.write_bytes("aé€😀b\n".encode())  # 1 + 2 + 3 + 4 + 2 bytes
    text, offset = "", 0
    for limit in (2, 2, 3, 4, 5):
        chunk = read_chunk(path, offset, limit, None)
        assert "\ufffd" not in chunk.text
        text += chunk.text
        offset = chunk.next_offset
    assert text == "aé€😀b\n" and offset == path.stat().st_size


def test_a_negative_offset_inside_a_character_skips_to_the_next(tmp_path: Path) -> None:
    path = tmp_path / "utf8.log"
    path.write_bytes("€x".encode())
    chunk = read_chunk(path, -2, 100, None)
    assert chunk.text == "x" and chunk.offset == 3


def test_broken_bytes_still_make_progress(tmp_path: Path) -> None:
    path = tmp_path / "broken.log"
    path.write_bytes(b"\xe2\x82")  # an incomplete character and nothing after it
    chunk = read_chunk(path, 0, 100, None)
    assert chunk.next_offset == 2 and chunk.text == "\ufffd"


def test_tail_quotes_the_end_of_a_long_log(tmp_path: Path) -> None:
    path = tmp_path / "long.log"
    path.write_text("".join(f"line {n}\n" for n in range(1000)))
    text = tail(path, max_chars=50)
    assert text.startswith("…") and text.endswith("line 999") and len(text) == 51


def test_tail_of_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert tail(tmp_path / "never-written.log") == ""
