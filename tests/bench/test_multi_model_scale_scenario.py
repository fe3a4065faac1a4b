"""The multi-model scale benchmark (scenario 23) still runs end to end, in its tiny
configuration: models of two archive sizes go up to a local S3 server and are each called cold,
two prefixes (a few models, more) get an endpoint each on a fresh server, and the section with
its tables and targets is written. Nothing here looks at a number's size, only at what the
section must hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_multi_model_scale_quick_run_writes_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "multi-model-scale", "--quick", "--results",
         str(results), "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "## 23." in text, output[-4000:]
    assert "### Cold path by archive size" in text, text[-3000:]
    assert "| 0.25 MiB" in text and "| 1 MiB" in text, text[-3000:]
    assert "### 50 models under the prefix, at rest" in text, text[-3000:]
    assert "| at rest" in text and "| after 1 call " in text, text[-3000:]
    assert "no listing and no request for a model before its first call" in text
    assert "Targets:" in text and "did not complete" not in text, text[-3000:]
