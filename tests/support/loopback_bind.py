"""Build the LD_PRELOAD library that keeps a test's Ray processes off the external interface.

Ray (checked with 2.60) listens on `::` for every node address except 127.0.0.1, whatever
`--node-ip-address` says; `loopback_bind.c` rewrites such a wildcard bind() to the node's own
loopback address. It is compiled once per cluster into the cluster's temporary folder (a C
compiler is a test dependency, like Docker for the Docker tests) and goes away with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("loopback_bind.c")
BIND_IP_VARIABLE = "POLYHOST_TEST_BIND_IP"


class CompilerMissing(RuntimeError):
    pass


def build_library(folder: Path) -> Path:
    """Compile loopback_bind.c into `folder`; the path of the shared library."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise CompilerMissing(
            "a C compiler (cc or gcc, e.g. `apt-get install gcc`) is needed to keep the test Ray "
            "cluster on loopback: Ray listens on :: for any node address but 127.0.0.1"
        )
    library = folder / "loopback_bind.so"
    result = subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(SOURCE), "-ldl"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"compiling {SOURCE.name} failed:\n{result.stderr[-2000:]}")
    return library


def preload_environment(library: Path, address: str) -> dict[str, str]:
    """Environment for a process (and its children) whose wildcard listeners go to `address`."""
    preload = " ".join(part for part in (str(library), os.environ.get("LD_PRELOAD", "")) if part)
    return {"LD_PRELOAD": preload, BIND_IP_VARIABLE: address}
