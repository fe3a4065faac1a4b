"""The Ray benchmark (scenario 12) still runs end to end, in its tiny configuration.

Nothing here looks at a number's size: it checks that the cluster and both servers came up,
that the process and Ray backends were both measured, that the node-loss part ran, and that
the section with its tables and targets was written.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("ray") is None,
        reason="scenario 12 needs Ray: pip install 'polyhost[ray]'",
    ),
    pytest.mark.skipif(
        not (shutil.which("wrk") and shutil.which("cc")),
        reason="scenario 12 drives Debian's wrk and builds the test cluster's loopback preload "
        "with a C compiler (make tools)",
    ),
]


def test_ray_quick_run_writes_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "ray", "--quick", "--results", str(results),
         "--work", str(tmp_path / "work")],
        cwd=ROOT, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert "Traceback" not in output, output[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "## 12." in text, output[-4000:]
    assert "| process |" in text and "| ray     |" in text, text[-3000:]
    assert "Cold start of a 3-instance endpoint" in text
    assert "Ray's GCS declares the node dead" in text
    assert "Targets:" in text
    assert "did not complete" not in text, text[-3000:]
