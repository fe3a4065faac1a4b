"""The server id: what lets a restarted server find exactly its own containers."""

from __future__ import annotations

from pathlib import Path

from polyhost.backends.server_id import server_id


def test_the_server_id_is_made_once_and_kept_in_the_state_folder(tmp_path: Path) -> None:
    first = server_id(tmp_path)
    assert server_id(tmp_path) == first
    assert (tmp_path / "server-id").read_text().strip() == first
    assert server_id(tmp_path / "other") != first


def test_a_damaged_server_id_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "server-id").write_text("../../etc\n")
    made = server_id(tmp_path)
    assert made != "../../etc" and len(made) == 16
