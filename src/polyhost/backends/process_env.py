"""The environment a container process starts with.

A container must not inherit the server's whole environment: that would leak the server's own
settings and secrets into every model and make a container behave differently depending on how
the server happened to be started. It gets a small allow-list (enough to find programs, pick a
locale, and reach S3 with the server's AWS settings so a `SAGEMAKER_SUBMIT_DIRECTORY` on s3
works), then the model's `Environment`, then the contract variables polyhost owns, which the
model cannot override.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import polyhost
from polyhost.backends.base import LaunchSpec

PASSTHROUGH_NAMES = frozenset({"PATH", "HOME", "LANG", "TMPDIR", "TZ"})
PASSTHROUGH_PREFIXES = ("LC_", "AWS_")


def passthrough(server_env: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed part of the server's environment."""
    return {
        key: value
        for key, value in server_env.items()
        if key in PASSTHROUGH_NAMES or key.startswith(PASSTHROUGH_PREFIXES)
    }


def container_environment(
    spec: LaunchSpec,
    server_env: Mapping[str, str] | None = None,
    extra_pythonpath: Path | None = None,
) -> dict[str, str]:
    """Allow-listed server env, then the model's Environment, then the contract variables."""
    env = passthrough(os.environ if server_env is None else server_env)
    env.update(spec.environment)
    low, high = spec.safe_port_range
    env["SAGEMAKER_BIND_TO_PORT"] = str(spec.port)
    env["SAGEMAKER_SAFE_PORT_RANGE"] = f"{low}-{high}"
    env["POLYHOST_BIND_HOST"] = spec.host
    if spec.model_dir is not None:
        env["SM_MODEL_DIR"] = str(spec.model_dir)
    else:
        env.pop("SM_MODEL_DIR", None)
    if extra_pythonpath is not None:
        existing = env.get("PYTHONPATH")
        env["PYTHONPATH"] = (
            f"{extra_pythonpath}{os.pathsep}{existing}" if existing else str(extra_pythonpath)
        )
    return env


def stack_pythonpath(state_dir: Path) -> Path:
    """A folder holding only a `polyhost` link to this package, for other interpreters.

    A built-in stack may run under another virtualenv's Python (TensorFlow apart from PyTorch);
    that interpreter must import `polyhost.stacks.*` without seeing the server's own
    site-packages, whose versions could clash with the stack's. Putting just this folder on
    its PYTHONPATH does that, wherever polyhost is installed.
    """
    folder = state_dir / "stack-pythonpath"
    folder.mkdir(parents=True, exist_ok=True)
    package = Path(polyhost.__file__).resolve().parent
    link = folder / "polyhost"
    try:
        if link.resolve() == package:
            return folder
    except OSError:
        pass
    temporary = folder / f".polyhost-{os.getpid()}"
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(package, target_is_directory=True)
    os.replace(temporary, link)  # atomic: a concurrent reader sees the old or the new link
    return folder
