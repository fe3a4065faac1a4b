"""The TensorFlow stack's settings, read once from the environment at start.

The names are those of SageMaker's TensorFlow Serving container where one exists, so a model
configured for SageMaker is configured the same way here:

- `SM_MODEL_DIR` (default `/opt/ml/model`): where the model archive was extracted.
- `SAGEMAKER_TFS_DEFAULT_MODEL_NAME`: the model answering requests without `tfs-model-name`.
- `SAGEMAKER_TFS_INTRA_OP_PARALLELISM` / `SAGEMAKER_TFS_INTER_OP_PARALLELISM`: TensorFlow's
  thread pools. SageMaker leaves them to TensorFlow (one thread per core each); a polyhost
  machine runs many containers side by side, so the defaults here are small (intra: up to 4,
  inter: up to 2, never more than the cores this process may use). `0` means TensorFlow's own
  default.
- `SAGEMAKER_SAFE_PORT_RANGE` (`low-high`): where the internal TensorFlow Serving REST port for
  `code/inference.py` handlers is taken from, as SageMaker does; an ephemeral port otherwise.
- `TF_CPP_MIN_LOG_LEVEL`: defaults to 2 (warnings and errors only) to keep container logs useful.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from polyhost.stacks.toolkit.environment import model_dir as toolkit_model_dir


class ConfigError(ValueError):
    """An environment variable has a value the stack cannot use; the message names it."""


def usable_cpus() -> int:
    """The cores this process may run on (affinity-aware), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _threads(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r}: expected a whole number of threads (0 = auto)"
        ) from None
    if value < 0:
        raise ConfigError(f"{name}={raw!r}: expected a whole number of threads (0 = auto)")
    return value


def _port_range(env: Mapping[str, str]) -> tuple[int, int] | None:
    raw = env.get("SAGEMAKER_SAFE_PORT_RANGE", "").strip()
    if not raw:
        return None
    low, sep, high = raw.partition("-")
    try:
        bounds = (int(low), int(high if sep else low))
    except ValueError:
        raise ConfigError(f"SAGEMAKER_SAFE_PORT_RANGE={raw!r}: expected 'low-high'") from None
    if not 0 < bounds[0] <= bounds[1] < 65536:
        raise ConfigError(f"SAGEMAKER_SAFE_PORT_RANGE={raw!r}: expected 'low-high' ports")
    return bounds


@dataclass(frozen=True)
class StackConfig:
    model_dir: Path
    default_model_name: str | None
    intra_op_threads: int
    inter_op_threads: int
    safe_port_range: tuple[int, int] | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> StackConfig:
        env = os.environ if environ is None else environ
        cpus = usable_cpus()
        default_name = env.get("SAGEMAKER_TFS_DEFAULT_MODEL_NAME", "").strip()
        return cls(
            model_dir=toolkit_model_dir(env),
            # SageMaker's own start script writes the string "None" for "not set".
            default_model_name=default_name if default_name not in ("", "None") else None,
            intra_op_threads=_threads(env, "SAGEMAKER_TFS_INTRA_OP_PARALLELISM", min(4, cpus)),
            inter_op_threads=_threads(env, "SAGEMAKER_TFS_INTER_OP_PARALLELISM", min(2, cpus)),
            safe_port_range=_port_range(env),
        )


def quiet_tensorflow_logs() -> None:
    """Keep TensorFlow's C++ start-up chatter out of the container log unless asked for.

    Must run before TensorFlow is imported: the C++ runtime reads the variable once.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
