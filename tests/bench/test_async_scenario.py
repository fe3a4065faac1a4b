"""The asynchronous inference benchmark (scenario 18) still runs end to end, in its tiny
configuration: the direct calls, a queue drained through a real server and moto's S3 (every
answer found there, or the scenario fails), the queue's own cost, and the section with its
tables and target. Nothing here looks at a number's size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_async_quick_run_writes_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "async", "--quick", "--results", str(results),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "## 18." in text, output[-4000:]
    assert "| queue (drain) |" in text and "| direct " in text, text[-3000:]
    assert "add+take+finish µs" in text, text[-3000:]
    assert "queue drain rate vs direct at the same concurrency" in text
    assert "did not complete" not in text, text[-3000:]
