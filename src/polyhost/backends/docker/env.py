"""The environment of a Docker container: the model's, the contract's, and nothing of the server.

The same rules as a process container (`process/env.py`), less what only a host process needs:
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
from polyhost.backends.contract_env import add_model_environment
from polyhost.backends.role_credentials import AwsCredentials

MODEL_DIR = "/opt/ml/model"
# A multi-model container's models (SageMaker's contract: /opt/ml/models/<name>/model), where
# the server puts each model it asks the container to load (`router.multi_model`).
MODELS_DIR = "/opt/ml/models"
# The contract's switch: the container serves many models, loaded through POST /models.
MULTI_MODEL_ENV = "SAGEMAKER_MULTI_MODEL"


def is_multi_model(spec: LaunchSpec) -> bool:
    """Whether the container is a multi-model one, as its contract environment says."""
    return spec.environment.get(MULTI_MODEL_ENV, "").strip().lower() == "true"


def container_model_dir(spec: LaunchSpec) -> str:
    """Where the container sees `spec.model_dir`: a multi-model container's models folder, any
    other container's model."""
    return MODELS_DIR if is_multi_model(spec) else MODEL_DIR


def docker_environment(
    spec: LaunchSpec,
    *,
    region: str,
    bind_host: str,
    credentials: AwsCredentials | None = None,
    server_env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """AWS defaults, the model's Environment, the role's credentials, the contract variables."""
    env: dict[str, str] = {}
    # The built-in stacks bind `bind_host` (others bind what they like; see `run.py`).
    add_model_environment(
        env,
        spec,
        region,
        os.environ if server_env is None else server_env,
        credentials,
        bind_host=bind_host,
    )
    return env
