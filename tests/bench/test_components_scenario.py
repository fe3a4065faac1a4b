"""The inference components benchmark (scenario 19) still runs end to end, in its tiny
configuration: both endpoints answer, the components are placed and deleted, both routing
strategies are measured, and the section with its tables and targets is written. Nothing here
looks at a number's size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_components_quick_run_writes_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "components", "--quick", "--results", str(results),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "## 19." in text, output[-4000:]
    assert "| LEAST_OUTSTANDING_REQUESTS |" in text and "| RANDOM " in text, text[-3000:]
    assert "Placement: 10 components of 1" in text and "(23 copies" in text, text[-3000:]
    assert "Targets:" in text
    assert "did not complete" not in text, text[-3000:]
