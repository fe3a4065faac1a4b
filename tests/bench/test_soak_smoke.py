"""The soak still runs end to end, for about 20 seconds instead of `make soak`'s 10 minutes.

Nothing here looks at a number: 20 seconds on a shared machine say nothing about growth. It
checks that the whole cycle ran (server, both endpoints, wrk, the kills, the flood, the
slowloris, the measurements at rest) and that the section with its table and every target was
written into the results file given, met or not.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not shutil.which("wrk"), reason="the soak drives Debian's wrk (apt-get install wrk)"
)


def test_a_20_second_soak_writes_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--seconds", "20", "--results", str(results),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode in (0, 1), output[-4000:]  # 1: a target missed, still written
    assert "Traceback" not in output, output[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "<!-- bench:soak -->" in text
    assert "## 11. Soak" in text
    assert "`.venv/bin/python -m bench.soak --seconds 20`" in text
    assert "| 5 kill " in text  # a warm-up, then four periods with a kill each
    for target in (
        "errors on the healthy containers",
        "server RSS growth",
        "server descriptors at rest other than pooled upstream connections",
        "pooled upstream connections at rest",
        "container processes",
        "state folder growth apart from",
        "flood container's log on disk",
        "slowloris connections closed by the server",
        "the victim serves again after every kill",
    ):
        assert f": {target}" in text, target
