"""The benchmark harness still runs end to end: the smallest scenario, in a tiny configuration.

Not a performance test — nothing here looks at a number's size. It runs `python -m bench
router-overhead --quick` (a few hundred requests against a real polyhost and a real echo
container) into a temporary folder and checks that the table, the targets and the plot were
written, so that `make bench` does not rot between the runs that measure.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not (shutil.which("hey") and shutil.which("wrk") and shutil.which("taskset")),
    reason="the benchmarks drive Debian's hey and wrk (apt-get install hey wrk)",
)


def test_router_overhead_quick_run_writes_its_section_and_plot(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "router-overhead",
            "--quick",
            "--results",
            str(results),
            "--work",
            str(tmp_path / "work"),
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=240,
        check=False,
    )
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "## Machine and versions" in text
    assert "## 1. Router overhead" in text
    assert "| 1KB" in text  # a table row was measured
    assert "Targets:" in text
    assert "did not complete" not in text
    plot = tmp_path / "plots" / "router-overhead.png"
    assert plot.read_bytes().startswith(b"\x89PNG")
