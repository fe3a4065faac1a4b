"""The shadow variant benchmark (scenario 22) still runs end to end, in its tiny configuration:
both endpoints answer, the rounds are measured, the shadow's copies are counted, and the section
with its table and targets is written. Nothing here looks at a number's size."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not shutil.which("wrk"), reason="scenario 22 drives Debian's wrk (make tools)")
def test_shadow_quick_run_writes_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "shadow", "--quick", "--results", str(results),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "## 22." in text, output[-4000:]
    assert "with shadow p50" in text
    assert "Copies: the production variant served" in text
    assert "Targets:" in text
    assert "did not complete" not in text, text[-3000:]
