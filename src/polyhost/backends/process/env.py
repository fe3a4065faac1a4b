"""The environment a container process starts with.

A container must not inherit the server's whole environment: that would leak the server's own
settings and secrets into every model and make a container behave differently depending on how
the server happened to be started. It gets a small allow-list (enough to find programs and pick
a locale), then what every backend's containers get (`contract_env.py`: AWS defaults with no
inherited identity, the model's `Environment`, its role's credentials, the contract variables),
then what only a process on the server's machine needs:
- POLYHOST_RUN_ID, random per start, by which the server finds this run's processes even after
  they leave its process tree (`proc.py`);
- SM_MODEL_DIR, the model's folder on this machine;
- a PYTHONPATH entry for a built-in stack run by another interpreter (`stack_pythonpath`).

Keeping the server's AWS files and instance role out keeps credentials from being inherited by
accident; it is no sandbox: a process container runs as the server's user.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import polyhost
from polyhost.backends.base import LaunchSpec
from polyhost.backends.contract_env import add_model_environment
from polyhost.backends.proc import RUN_ID_VARIABLE
from polyhost.backends.role_credentials import AwsCredentials

PASSTHROUGH_NAMES = frozenset({"PATH", "HOME", "LANG", "TMPDIR", "TZ"})
PASSTHROUGH_PREFIXES = ("LC_",)


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
    *,
    region: str,
    credentials: AwsCredentials | None = None,
    run_id: str | None = None,
) -> dict[str, str]:
    """Allow-listed server env, AWS defaults, the model's Environment, the role's credentials,
    then the contract variables."""
    server = os.environ if server_env is None else server_env
    env = passthrough(server)
    add_model_environment(env, spec, region, server, credentials, bind_host=spec.host)
    if run_id is not None:
        env[RUN_ID_VARIABLE] = run_id
    else:
        env.pop(RUN_ID_VARIABLE, None)
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
    os.chmod(folder, 0o755)  # a container user's interpreter reads it (`confinement.py`)
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
