"""The multi-model benchmark against MLServer (scenario 24) still runs end to end, in its tiny
configuration: the same models on polyhost (from a local S3 server) and on MLServer (its model
repository API), a round of warm throughput on both, and the round robin over more models than
the budget holds on both; the section with its tables and targets is written. Nothing here
looks at a number's size.

MLServer runs from its own venv under bench/work/venvs/ (installed by its first benchmark run,
which takes minutes): the test uses that venv and is skipped when it is not there yet."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENVS = ROOT / "bench" / "work" / "venvs"


@pytest.mark.skipif(not shutil.which("wrk"), reason="scenario 24 drives Debian's wrk (make tools)")
@pytest.mark.skipif(
    not (VENVS / "mlserver" / ".bench-requirements").exists(),
    reason="MLServer's venv is not installed yet: `python -m bench mlserver` installs it",
)
def test_multi_model_mlserver_quick_run_writes_its_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    work = tmp_path / "work"
    work.mkdir()
    (work / "venvs").symlink_to(VENVS)
    done = subprocess.run(
        [sys.executable, "-m", "bench", "multi-model-mlserver", "--quick", "--results",
         str(results), "--work", str(work)],
        cwd=ROOT, capture_output=True, timeout=300, check=False,
    )  # fmt: skip
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output[-4000:]
    text = results.read_text(encoding="utf-8")
    assert "## 24." in text, output[-4000:]
    assert "### Warm throughput: 4 loaded models in turn, c=32" in text, text[-3000:]
    assert "| round | polyhost req/s" in text, text[-3000:]
    assert "### More models than memory holds: 6 models, room for about 2" in text
    assert "| polyhost | 6 " in text and "| MLServer | 6 " in text, text[-3000:]
    # The one target that holds whatever the machine's speed: polyhost answers every call.
    assert "- met: polyhost keeps serving once the models no longer fit" in text, text[-3000:]
    assert "Targets:" in text and "did not complete" not in text, text[-3000:]
