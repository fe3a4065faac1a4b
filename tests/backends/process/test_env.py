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
from polyhost.backends.process.env import container_environment, stack_pythonpath
from polyhost.backends.role_credentials import AwsCredentials


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
        "AWS_SECRET_ACCESS_KEY": "server-secret",
        "AWS_SESSION_TOKEN": "server-token",
        "AWS_PROFILE": "admin",
        "AWS_ENDPOINT_URL_S3": "http://s3",
        "DATABASE_PASSWORD": "x",
        "POLYHOST_STATE_DIR": "/state",
        "POLYHOST_AUTH_FILE": "/secrets/principals.json",
        "PYTHONPATH": "/server/src",
        "VIRTUAL_ENV": "/venv",
    }
    env = container_environment(
        spec({"TZ": "Europe/Paris", "SAGEMAKER_BIND_TO_PORT": "1"}, Path("/m")),
        server,
        region="eu-west-3",
        run_id="r1",
    )
    assert env == {
        "PATH": "/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "TMPDIR": "/t",
        "TZ": "Europe/Paris",
        "AWS_REGION": "eu-west-3",
        "AWS_DEFAULT_REGION": "eu-west-3",
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL_S3": "http://s3",  # where the server's s3:// URLs point: no secret
        "SAGEMAKER_BIND_TO_PORT": "9000",
        "SAGEMAKER_SAFE_PORT_RANGE": "9001-9009",
        "POLYHOST_BIND_HOST": "127.0.0.1",
        "POLYHOST_RUN_ID": "r1",
        "SM_MODEL_DIR": "/m",
    }


def test_the_role_credentials_replace_any_the_model_gives() -> None:
    model = {"AWS_ACCESS_KEY_ID": "model-key", "AWS_SESSION_TOKEN": "model-token", "X": "1"}
    role = AwsCredentials("ROLEKEY", "role-secret")
    env = container_environment(
        spec(model), {"AWS_SECRET_ACCESS_KEY": "server"}, region="us-east-1", credentials=role
    )
    assert env["AWS_ACCESS_KEY_ID"] == "ROLEKEY"
    assert env["AWS_SECRET_ACCESS_KEY"] == "role-secret"
    assert "AWS_SESSION_TOKEN" not in env  # never a mix of the role's and the model's
    assert env["X"] == "1"
    with_token = AwsCredentials("ROLEKEY", "role-secret", "role-token")
    env = container_environment(spec({}), {}, region="us-east-1", credentials=with_token)
    assert env["AWS_SESSION_TOKEN"] == "role-token"


def test_the_model_may_set_its_own_region_and_aws_files() -> None:
    model = {"AWS_REGION": "ap-south-1", "AWS_CONFIG_FILE": "/model/aws-config"}
    env = container_environment(spec(model), {}, region="us-east-1")
    assert env["AWS_REGION"] == "ap-south-1"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_CONFIG_FILE"] == "/model/aws-config"


def test_the_run_id_is_the_servers_alone() -> None:
    env = container_environment(spec({"POLYHOST_RUN_ID": "forged"}), {}, region="us-east-1")
    assert "POLYHOST_RUN_ID" not in env
    env = container_environment(
        spec({"POLYHOST_RUN_ID": "forged"}), {}, region="us-east-1", run_id="real"
    )
    assert env["POLYHOST_RUN_ID"] == "real"


def test_extra_pythonpath_goes_first() -> None:
    env = container_environment(
        spec({"PYTHONPATH": "/user/code"}), {}, Path("/shim"), region="us-east-1"
    )
    assert env["PYTHONPATH"] == f"/shim{os.pathsep}/user/code"
    shim = container_environment(spec({}), {}, Path("/shim"), region="us-east-1")
    assert shim["PYTHONPATH"] == "/shim"


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
