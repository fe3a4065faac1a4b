"""The serverless benchmark (scenario 25) still runs end to end, in its tiny configuration: both
endpoints answer, the serverless one stops its container and answers cold, and the section with
its table and target is written. Nothing here looks at a number's size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_serverless_quick_run_writes_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "serverless", "--quick", "--results", str(results),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "## 25." in text, output[-4000:]
    assert "serverless cold ms" in text and "Cold start (median of rounds)" in text
    assert "Targets:" in text
    assert "did not complete" not in text, text[-3000:]
