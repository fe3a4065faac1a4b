"""The new-stacks benchmark (scenario 16) still runs end to end, in its tiny configuration.

Nothing here looks at a number's size: it checks that both stacks came up and answered every
row, that the bare and inline references ran, and that the section with its table and targets
was written. Most of its time is transformers' import, in the stack and in the reference.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("xgboost", "transformers", "torch")),
    reason="scenario 16 needs the xgboost and huggingface stacks' libraries",
)


def test_new_stacks_quick_run_writes_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "new-stacks", "--quick", "--results", str(results),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "## 16." in text, output[-4000:]
    assert "| xgboost     | 1 " in text and "| huggingface | 1 " in text, text[-3000:]
    assert "xgboost 1 and 100 rows, huggingface 1 and 100 rows" in text
    assert "Targets:" in text
    assert "did not complete" not in text, text[-3000:]
