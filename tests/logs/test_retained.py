"""The Logs API's catalog: live streams, plus the retained logs of endpoints no longer known."""

from __future__ import annotations

from pathlib import Path

from polyhost.logs.retained import RetainedLogs, scan
from polyhost.logs.streams import LogStream


def container_log(root: Path, endpoint: str, revision: int, container: str) -> Path:
    path = root / endpoint / f"r{revision}" / "AllTraffic" / "i-0" / container / "container.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("line\n")
    return path


def test_scan_reads_the_latest_revision_of_each_endpoint_and_skips_trash(tmp_path: Path) -> None:
    container_log(tmp_path, "ep", 2, "old")
    newest = container_log(tmp_path, "ep", 10, "new")  # r10 after r2: numbers, not text
    container_log(tmp_path, ".trash-ep", 1, "x")
    (tmp_path / "empty" / "r1").mkdir(parents=True)
    assert scan(tmp_path) == {"ep": [LogStream("ep", "AllTraffic", "i-0", "new", newest)]}


def test_scan_lists_streams_with_sagemakers_names(tmp_path: Path) -> None:
    alpha = container_log(tmp_path, "ep", 3, "alpha")
    beta = container_log(tmp_path, "ep", 3, "beta")
    found = scan(tmp_path)
    assert found == {
        "ep": [
            LogStream("ep", "AllTraffic", "i-0", "alpha", alpha),
            LogStream("ep", "AllTraffic", "i-0", "beta", beta),
        ]
    }
    assert [s.name for s in found["ep"]] == ["AllTraffic/i-0/alpha", "AllTraffic/i-0/beta"]


def test_scan_stops_at_its_bound(tmp_path: Path) -> None:
    for n in range(5):
        container_log(tmp_path, f"ep{n}", 1, "c")
    assert sum(len(s) for s in scan(tmp_path, max_streams=3).values()) == 3


def test_live_streams_win_and_the_scan_is_cached(tmp_path: Path) -> None:
    container_log(tmp_path, "live", 1, "on-disk")
    container_log(tmp_path, "deleted", 1, "c")
    live_stream = LogStream("live", "AllTraffic", "i-0", "running", tmp_path / "x.log")
    now = [0.0]
    catalog = RetainedLogs(tmp_path, lambda: {"live": [live_stream]}, clock=lambda: now[0])
    first = catalog()
    assert first["live"] == [live_stream]
    assert [s.hostname for s in first["deleted"]] == ["c"]
    container_log(tmp_path, "later", 1, "c")
    assert "later" not in catalog()  # within the cache's lifetime
    now[0] += 5.0
    assert "later" in catalog()
