"""Virtual environments of the peers under bench/work/venvs/, never the project's .venv.

A venv is (re)built when its recorded requirement list differs from the one asked for, so a
second `make bench` starts at once and a changed pin takes effect. The model libraries are
pinned to the versions in the project's .venv, so a model saved there loads the same there.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

MARKER = ".bench-requirements"


class VenvError(RuntimeError):
    """A peer's environment could not be installed; the message quotes pip."""


def project_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def pinned(package: str, fallback: str = "") -> str:
    """`package==VERSION` as installed in the project's venv (local build tags dropped)."""
    version = project_version(package)
    return f"{package}=={version.split('+')[0]}" if version else f"{package}{fallback}"


def ensure(root: Path, name: str, requirements: list[str], timeout: float = 1800) -> Path:
    """The venv `root/name` with `requirements` installed; returns its bin/ folder."""
    venv = root / name
    wanted = "\n".join(requirements) + "\n"
    marker = venv / MARKER
    if marker.exists() and marker.read_text(encoding="utf-8") == wanted:
        return venv / "bin"
    if venv.exists():
        shutil.rmtree(venv)
    base = getattr(sys, "_base_executable", sys.executable)
    print(f"  installing {name} into {venv} (first run only): {' '.join(requirements)}", flush=True)
    steps = [
        [base, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *requirements],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise VenvError(f"{' '.join(step[:5])} ... took longer than {timeout:g} s") from None
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            lines = [x for x in output.splitlines() if not x.startswith("WARNING: Location")]
            raise VenvError(
                f"installing {name} failed ({' '.join(step[2:6])} ...):\n" + "\n".join(lines[-25:])
            )
    marker.write_text(wanted, encoding="utf-8")
    return venv / "bin"


def package_version(bin_dir: Path, package: str) -> str:
    done = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            f"import importlib.metadata as m; print(m.version({package!r}))",
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.stdout.decode().strip() or "unknown"
