"""The data capture benchmark (scenario 21) still runs end to end, in its tiny configuration:
a real server capturing to moto's S3 beside an endpoint without capture, every captured
invocation found written by the server's counters, and the section with its table and targets.
Nothing here looks at a number's size."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not shutil.which("wrk"), reason="the benchmarks drive Debian's wrk (apt-get install wrk)"
)


def test_data_capture_quick_run_writes_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "data-capture", "--quick", "--results", str(results),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, timeout=240, check=False,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "## 21. Data capture" in text, output[-4000:]
    assert "| round | no capture req/s | capture 100 % req/s |" in text, text[-3000:]
    assert "capture at 100 % sampling: cost in c=32 throughput" in text
    assert "- met: every captured invocation written" in text, text[-3000:]
    assert "did not complete" not in text, text[-3000:]
