"""The TensorFlow stack's environment settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from polyhost.stacks.tensorflow.config import ConfigError, StackConfig, usable_cpus
from polyhost.stacks.tensorflow.restapi import candidate_ports


def test_defaults_are_small_thread_pools_and_sagemakers_model_dir() -> None:
    config = StackConfig.from_environ({})
    assert config.model_dir == Path("/opt/ml/model")
    assert config.default_model_name is None
    assert 1 <= config.intra_op_threads == min(4, usable_cpus())
    assert 1 <= config.inter_op_threads == min(2, usable_cpus())
    assert config.safe_port_range is None


def test_sagemakers_variables_are_honoured() -> None:
    config = StackConfig.from_environ(
        {
            "SM_MODEL_DIR": "/models/x",
            "SAGEMAKER_TFS_DEFAULT_MODEL_NAME": "mnist",
            "SAGEMAKER_TFS_INTRA_OP_PARALLELISM": "0",
            "SAGEMAKER_TFS_INTER_OP_PARALLELISM": "3",
            "SAGEMAKER_SAFE_PORT_RANGE": "9000-9009",
        }
    )
    assert config.model_dir == Path("/models/x")
    assert config.default_model_name == "mnist"
    assert (config.intra_op_threads, config.inter_op_threads) == (0, 3)
    assert config.safe_port_range == (9000, 9009)
    # SageMaker's start script passes the string "None" when no default is set.
    assert (
        StackConfig.from_environ({"SAGEMAKER_TFS_DEFAULT_MODEL_NAME": "None"}).default_model_name
        is None
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SAGEMAKER_TFS_INTRA_OP_PARALLELISM", "many"),
        ("SAGEMAKER_TFS_INTER_OP_PARALLELISM", "-1"),
        ("SAGEMAKER_SAFE_PORT_RANGE", "a-b"),
        ("SAGEMAKER_SAFE_PORT_RANGE", "9010-9000"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        StackConfig.from_environ({name: value})


def test_rest_port_is_sagemakers_second_port_of_the_range() -> None:
    assert candidate_ports(None) == []
    assert candidate_ports((9000, 9000)) == [9000]
    assert candidate_ports((9000, 9003)) == [9001, 9002, 9003, 9000]


def test_the_stack_imports_nothing_of_the_server_and_not_tensorflow_up_front() -> None:
    """A container is a program: it must ship without the server, and answer /ping before
    TensorFlow's multi-second import is done."""
    probe = (
        "import sys\n"
        "import polyhost.stacks.tensorflow.__main__, polyhost.stacks.tensorflow.service\n"
        "import polyhost.stacks.tensorflow.restapi, polyhost.stacks.tensorflow.handlers\n"
        "server = ('polyhost.control', 'polyhost.deploy', 'polyhost.router', 'polyhost.http',\n"
        "          'polyhost.backends', 'polyhost.server')\n"
        "print(sorted(m for m in sys.modules if m.startswith(server) or m == 'tensorflow'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout
