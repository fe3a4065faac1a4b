"""The environment of a Docker container: the model's, the contract's, and nothing of the server.

The same rules as a process container (`process_env.py`), less what only a host process needs:
no PATH, HOME or locale of the server (the image sets its own), no PYTHONPATH, no run id. It
gets the server's region and S3 endpoint, an empty AWS credentials/config file and no instance
metadata (so an SDK inside finds no identity by accident), its role's credentials when the
server maps the model's role (`role_credentials.py`), then the model's Environment, then the
variables of the contract, which the model cannot override.

A role's credentials travel as environment variables, as on SageMaker's own hosts: whoever can
`docker inspect` the container can read them, so access to the Docker daemon (root-equivalent
anyway) must be kept to those allowed to act as the model's role.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from polyhost.backends.base import LaunchSpec
from polyhost.backends.process_env import CREDENTIAL_NAMES, aws_defaults
from polyhost.backends.role_credentials import AwsCredentials

MODEL_DIR = "/opt/ml/model"


def docker_environment(
    spec: LaunchSpec,
    *,
    region: str,
    bind_host: str,
    credentials: AwsCredentials | None = None,
    server_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """AWS defaults, the model's Environment, the role's credentials, the contract variables."""
    env = aws_defaults(region, os.environ if server_env is None else server_env)
    env.update(spec.environment)
    if credentials is not None:
        for name in CREDENTIAL_NAMES:  # never a mix of the role's and the model's keys
            env.pop(name, None)
        env.update(credentials.environment())
    low, high = spec.safe_port_range
    env["SAGEMAKER_BIND_TO_PORT"] = str(spec.port)
    env["SAGEMAKER_SAFE_PORT_RANGE"] = f"{low}-{high}"
    # The built-in stacks bind this address (others bind what they like; see docker_run).
    env["POLYHOST_BIND_HOST"] = bind_host
    return env
