"""The environment a container process starts with.

A container must not inherit the server's whole environment: that would leak the server's own
settings and secrets into every model and make a container behave differently depending on how
the server happened to be started. It gets a small allow-list (enough to find programs and pick
a locale), then the model's `Environment`, then the variables polyhost owns, which the model
cannot override.

Nothing of the server's AWS identity passes, credentials least of all. A container gets:
- the server's region as AWS_REGION / AWS_DEFAULT_REGION (the model's Environment may change it);
- the S3 endpoint the server resolves `s3://` model data against (AWS_ENDPOINT_URL_S3 and
  AWS_ENDPOINT_URL, when the server has them: addresses, not secrets), so an `s3://` URL in a
  model (SAGEMAKER_SUBMIT_DIRECTORY) means the same place to its container as to the server;
- AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE pointing at an empty file and
  AWS_EC2_METADATA_DISABLED, so an SDK in the container does not find the credentials of the
  user the server runs as in its home folder, or the machine's instance role (a model that
  needs a profile names its files in its Environment). This keeps credentials from being
  inherited by accident; it is no sandbox: a process container runs as the server's user;
- its model's role credentials, when the server maps that role (`role_credentials.py`);
- POLYHOST_RUN_ID, random per start, by which the server finds this run's processes even after
  they leave its process tree (`process_tree.py`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import polyhost
from polyhost.backends.base import LaunchSpec
from polyhost.backends.proc import RUN_ID_VARIABLE
from polyhost.backends.role_credentials import AwsCredentials

PASSTHROUGH_NAMES = frozenset({"PATH", "HOME", "LANG", "TMPDIR", "TZ"})
PASSTHROUGH_PREFIXES = ("LC_",)
CREDENTIAL_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
ENDPOINT_NAMES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


def passthrough(server_env: Mapping[str, str]) -> dict[str, str]:
    """The allow-listed part of the server's environment."""
    return {
        key: value
        for key, value in server_env.items()
        if key in PASSTHROUGH_NAMES or key.startswith(PASSTHROUGH_PREFIXES)
    }


def aws_defaults(region: str, server_env: Mapping[str, str]) -> dict[str, str]:
    """What every container starts with for AWS SDKs: the region, the server's S3 endpoint,
    and no inherited identity."""
    defaults = {
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    defaults.update({name: server_env[name] for name in ENDPOINT_NAMES if name in server_env})
    return defaults


def add_model_environment(
    env: dict[str, str],
    spec: LaunchSpec,
    region: str,
    server_env: Mapping[str, str],
    credentials: AwsCredentials | None,
    *,
    bind_host: str,
) -> None:
    """Onto `env`: AWS defaults, the model's Environment, the role's credentials, then the
    contract variables (which the model cannot override). Every backend's containers get these
    the same way; what comes before them (`env`) is the backend's own."""
    env.update(aws_defaults(region, server_env))
    env.update(spec.environment)
    if credentials is not None:
        for name in CREDENTIAL_NAMES:  # never a mix of the role's and the model's keys
            env.pop(name, None)
        env.update(credentials.environment())
    low, high = spec.safe_port_range
    env["SAGEMAKER_BIND_TO_PORT"] = str(spec.port)
    env["SAGEMAKER_SAFE_PORT_RANGE"] = f"{low}-{high}"
    env["POLYHOST_BIND_HOST"] = bind_host


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
