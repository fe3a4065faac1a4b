"""The environment variables SageMaker's framework containers read, with their defaults.

Kept in one place so every stack agrees on names and defaults, and so a test can see at a glance
what configures a stack.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# Where SageMaker extracts ModelDataUrl inside a container; paths users wrote for SageMaker
# (e.g. SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code) are relative to it.
SAGEMAKER_MODEL_DIR = "/opt/ml/model"
DEFAULT_PROGRAM = "inference.py"
DEFAULT_ACCEPT = "application/json"


def model_dir(environ: Mapping[str, str] | None = None) -> Path:
    """SM_MODEL_DIR, else SageMaker's /opt/ml/model."""
    env = os.environ if environ is None else environ
    return Path(env.get("SM_MODEL_DIR") or SAGEMAKER_MODEL_DIR)


def default_accept(environ: Mapping[str, str] | None = None) -> str:
    """What a missing or `*/*` Accept means: SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT or JSON."""
    env = os.environ if environ is None else environ
    return env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or DEFAULT_ACCEPT


def flag(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """A boolean environment switch: 1/true/yes/on (any case) mean on."""
    env = os.environ if environ is None else environ
    return env.get(name, "").strip().lower() in ("1", "true", "yes", "on")
