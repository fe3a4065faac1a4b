"""The access-control benchmark still runs end to end, in its tiny configuration.

Nothing here looks at a number's size: it checks that both servers came up, that the signed
requests were served (the scenario refuses to measure anything that answers non-200),
and that the section with its tables and targets was written.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not (shutil.which("wrk") and shutil.which("taskset")),
    reason="the benchmarks drive Debian's wrk (apt-get install wrk)",
)


def test_auth_quick_run_writes_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "auth", "--quick", "--results", str(results),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, timeout=240, check=False,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert "Traceback" not in output, output[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "## 9. Access control" in text
    assert "| 1 KB c=1 p50 (ms)" in text and "SigV4Verifier.verify, 5 MB body" in text
    assert "p50 added by auth" in text
    # The three kinds of load, and the round-by-round table the medians come from.
    assert "| off, unsigned | off" in text and "| round |" in text
    assert "did not complete" not in text
