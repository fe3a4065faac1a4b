"""What the numbers were measured on: CPU, cores, memory, load, versions, date."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _tool_version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, timeout=10, check=False)
    except OSError:
        return "not installed"
    text = (done.stdout or done.stderr).decode(errors="replace").strip().splitlines()
    return text[0] if text else "unknown"


def _dpkg_version(package: str) -> str:
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, timeout=10
        )
    except OSError:
        return "unknown"
    return done.stdout.decode().strip() or "unknown"


def git_revision() -> str:
    try:
        head = (
            subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                timeout=10,
            )
            .stdout.decode()
            .strip()
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "src"],
            capture_output=True,
            timeout=10,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' (with uncommitted changes in src/)' if dirty else ''}" if head else "unknown"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def machine_lines() -> list[str]:
    memory = psutil.virtual_memory().total / 2**30
    openblas = {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}
    return [
        f"- Date: {now()}; polyhost {_version('polyhost')} at git {git_revision()}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores "
        f"({psutil.cpu_count(logical=False)} physical); RAM {memory:.1f} GiB",
        f"- OS: {platform.platform()}; Python {sys.version.split()[0]}",
        f"- Load average (1/5/15 min) when this run started: {load_average()}",
        f"- Server stack: uvicorn {_version('uvicorn')}, httptools {_version('httptools')}, "
        f"uvloop {_version('uvloop')}; boto3 {_version('boto3')}",
        f"- Models: scikit-learn {_version('scikit-learn')}, torch {_version('torch')}, "
        f"numpy {_version('numpy')}",
        f"- Load tools: hey {_dpkg_version('hey')} (Debian), wrk {_dpkg_version('wrk')} "
        "(Debian), `bench/openloop.py` (open-loop, asyncio + httptools)",
        f"- OpenBLAS environment: {openblas or 'none set'}",
    ]
