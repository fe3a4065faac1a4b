"""Hotspots from py-spy's collapsed stacks: self and total share, with file and line."""

from __future__ import annotations

from bench.profile import hotspots, inclusive

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
