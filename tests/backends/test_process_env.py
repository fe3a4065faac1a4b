"""A container's environment, and how another interpreter finds the built-in stacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import polyhost
from polyhost.backends.base import LaunchSpec
from polyhost.backends.process_env import container_environment, stack_pythonpath


def spec(environment: dict[str, str], model_dir: Path | None = None) -> LaunchSpec:
    return LaunchSpec(
        container_id="c",
        image="i",
        environment=environment,
        model_dir=model_dir,
        host="127.0.0.1",
        port=9000,
        safe_port_range=(9001, 9009),
        log_path=Path("/nonexistent/log"),
    )


def test_allow_list_then_model_then_contract() -> None:
    server = {
        "PATH": "/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "TMPDIR": "/t",
        "TZ": "UTC",
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_ENDPOINT_URL_S3": "http://s3",
        "DATABASE_PASSWORD": "x",
        "POLYHOST_STATE_DIR": "/state",
        "PYTHONPATH": "/server/src",
        "VIRTUAL_ENV": "/venv",
    }
    env = container_environment(
        spec({"TZ": "Europe/Paris", "SAGEMAKER_BIND_TO_PORT": "1"}, Path("/m")), server
    )
    assert env == {
        "PATH": "/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "TMPDIR": "/t",
        "TZ": "Europe/Paris",
        "AWS_ACCESS_KEY_ID": "AKIA",
        "AWS_ENDPOINT_URL_S3": "http://s3",
        "SAGEMAKER_BIND_TO_PORT": "9000",
        "SAGEMAKER_SAFE_PORT_RANGE": "9001-9009",
        "POLYHOST_BIND_HOST": "127.0.0.1",
        "SM_MODEL_DIR": "/m",
    }


def test_extra_pythonpath_goes_first() -> None:
    env = container_environment(spec({"PYTHONPATH": "/user/code"}), {}, Path("/shim"))
    assert env["PYTHONPATH"] == f"/shim{os.pathsep}/user/code"
    assert container_environment(spec({}), {}, Path("/shim"))["PYTHONPATH"] == "/shim"


def test_another_interpreter_imports_polyhost_and_nothing_else(tmp_path: Path) -> None:
    folder = stack_pythonpath(tmp_path)
    assert stack_pythonpath(tmp_path) == folder  # idempotent
    assert sorted(p.name for p in folder.iterdir()) == ["polyhost"]
    other = shutil.which("python3", path="/usr/bin:/bin")
    if other is None or Path(other).resolve() == Path(sys.executable).resolve():
        pytest.skip("no second Python interpreter on this machine")
    code = "import json, sys, polyhost; print(json.dumps([polyhost.__file__, sys.path]))"
    result = subprocess.run(
        [other, "-s", "-c", code],
        env={"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    location, path = json.loads(result.stdout)
    assert Path(location).resolve() == Path(polyhost.__file__).resolve()
    # The server's own packages stay out of the stack's interpreter.
    assert not [entry for entry in path if entry.startswith(sys.prefix)]
