"""The multi-model benchmark (scenario 17) still runs end to end, in its tiny configuration:
models go up to a local S3 server, a MultiModel endpoint and a single-model one answer, the cold
pass evicts within the budget, and the section with its tables and targets is written. Nothing
here looks at a number's size, only at what the section must hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_multi_model_quick_run_writes_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "multi-model", "--quick", "--results", str(results),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "## 17." in text, output[-4000:]
    assert "40 models under `s3://models/mme/`" in text, text[-3000:]
    assert "The first 24 models called in turn" in text, text[-3000:]
    assert "| cold: first call of a model" in text and "| warm: 5 loaded models" in text
    assert "| round | single-model p50" in text, text[-3000:]
    # 24 cold calls and 4 rounds over 5 warm models, every answer checked, the container never
    # restarted: the one target that holds whatever the machine's speed.
    assert "- met: every answer right, no container restart: 44 checked" in text, text[-3000:]
    assert "Targets:" in text and "did not complete" not in text, text[-3000:]
