"""What every container's environment holds, whichever backend runs it: the container contract's.

Each backend starts from its own base (a process container: an allow-list of the server's
environment; a Docker container: nothing, the image sets its own) and adds the same things in
the same order, so a model sees the same variables on every backend:
- AWS defaults: the server's region (AWS_REGION / AWS_DEFAULT_REGION), the S3 endpoint the
  server resolves `s3://` model data against (AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL, when
  the server has them: addresses, not secrets), and no inherited identity: the AWS credentials
  and config files point at an empty file, instance metadata is off;
- the model's Environment, which may change any of those;
- its role's credentials, when the server maps the model's ExecutionRoleArn
  (`role_credentials.py`), never mixed with keys the model set;
- the variables of the contract (SAGEMAKER_BIND_TO_PORT, SAGEMAKER_SAFE_PORT_RANGE, and
  POLYHOST_BIND_HOST for the built-in stacks), which the model cannot override, and the
  container's memory limit when it has one (SAGEMAKER_MAX_MEMORY_BYTES: the budget a
  multi-model container keeps its loaded models within, answering 507 rather than being
  killed by the limit).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from polyhost.backends.base import LaunchSpec
from polyhost.backends.role_credentials import AwsCredentials

CREDENTIAL_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
ENDPOINT_NAMES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


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
    if spec.limits.memory_bytes is not None:
        env["SAGEMAKER_MAX_MEMORY_BYTES"] = str(spec.limits.memory_bytes)
