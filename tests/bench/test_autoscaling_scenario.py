"""The autoscaling benchmark (scenario 20) still runs end to end, in its tiny configuration: the
scalable target and its target tracking policy are accepted, the step load runs in windows, and
the section with its windows, activities, plot and targets is written. Nothing here looks at a
number's size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_autoscaling_quick_run_writes_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "autoscaling", "--quick", "--results", str(results),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, timeout=400, check=False,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "## 20." in text, output[-4000:]
    assert all(f"| {phase} " in text for phase in ("before", "step", "after")), text[-3000:]
    assert "Scaling activities, newest first:" in text
    assert (tmp_path / "plots" / "autoscaling.png").is_file()
    assert "Targets:" in text
    assert "did not complete" not in text, text[-3000:]
