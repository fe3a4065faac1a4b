"""Hotspots from py-spy's collapsed stacks: self and total share, with file and line."""

from __future__ import annotations

from bench.profile import hotspots, inclusive, processes

COLLAPSED = """\
process 1:"python -m polyhost";run (polyhost/server.py:10);send (polyhost/router/upstream.py:114) 6
process 1:"python -m polyhost";run (polyhost/server.py:10);feed (/x/site-packages/uvicorn/h.py:5) 3
process 1:"python -m polyhost";run (polyhost/server.py:10) 1
"""


def test_self_time_is_the_innermost_frame() -> None:
    top = hotspots(COLLAPSED)
    assert top[0].frame == "send (polyhost/router/upstream.py:114)"
    assert top[0].self_pct == 60.0
    assert top[1].frame == "feed (uvicorn/h.py:5)"
    assert {h.frame: h.total_pct for h in top}["run (polyhost/server.py:10)"] == 100.0


def test_inclusive_share_of_polyhost_frames() -> None:
    shares = dict(inclusive(COLLAPSED, "polyhost/"))
    assert shares["run (polyhost/server.py:10)"] == 100.0
    assert shares["send (polyhost/router/upstream.py:114)"] == 60.0


def test_process_shares_go_to_the_innermost_process() -> None:
    server = 'process 9:"/v/bin/python -m polyhost serve --port 1"'
    child = 'process 12:"/v/bin/python -m polyhost.stacks.pytorch"'
    collapsed = f"{server};run (a.py:1) 1\n{server};{child};forward (b.py:2) 3\n"
    assert processes(collapsed) == [
        ("polyhost.stacks.pytorch (pid 12)", 75.0),
        ("polyhost serve (pid 9)", 25.0),
    ]
