"""What AWS identity a container gets: its model role's credentials, never the server's.

Real containers: a script that reports its environment and what botocore's default chain finds
(the way a model's code would look for credentials), started by the process backend; and the
issue's own case, through a real server and boto3: a scikit-learn model whose inference.py
returns os.environ.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polyhost.backends.process.backend import ProcessBackend
from polyhost.backends.registry import ImageRegistry
from polyhost.backends.role_credentials import RoleCredentialsError, load_role_credentials
from polyhost.control.seam import ContainerSpec, EndpointSpec, VariantSpec
from polyhost.control.specs import build_spec, spec_from_json, spec_to_json
from polyhost.settings import Settings
from tests.backends.launch import launch_spec, wait_for
from tests.support.endpoints import wait_status
from tests.support.server import PolyhostProcess, write_image_config

ROLE = "arn:aws:iam::123456789012:role/ModelRole"
UNMAPPED = "arn:aws:iam::123456789012:role/Unmapped"
SERVER_KEY = "AKIASERVERKEY"
SERVER_SECRET = "server-secret-must-not-leak"

REPORT = """
import json, os
import botocore.session
found = botocore.session.get_session().get_credentials()
with open("identity.json", "w") as out:
    json.dump({"env": dict(os.environ),
               "chain": None if found is None else found.get_frozen_credentials().access_key},
              out)
"""

INFERENCE = """
import json, os

def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return json.dumps(dict(os.environ))
"""


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    """The server runs with credentials of its own, in its environment and in its home."""
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text(
        f"[default]\naws_access_key_id = {SERVER_KEY}\naws_secret_access_key = {SERVER_SECRET}\n"
        "[model-role]\naws_access_key_id = AKIAMODEL\naws_secret_access_key = model-secret\n"
        "aws_session_token = model-token\n",
        encoding="utf-8",
    )
    env = {
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": SERVER_KEY,
        "AWS_SECRET_ACCESS_KEY": SERVER_SECRET,
        "AWS_SESSION_TOKEN": "server-token",
        "AWS_PROFILE": "default",
        "AWS_SHARED_CREDENTIALS_FILE": str(home / ".aws" / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return env


@pytest.fixture
def server_identity(server_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """`server_env` as this process's own environment (for a backend run in the test)."""
    for key, value in server_env.items():
        monkeypatch.setenv(key, value)
    return server_env


def roles_file(tmp_path: Path) -> Path:
    path = tmp_path / "roles.toml"
    path.write_text(f'[roles."{ROLE}"]\nprofile = "model-role"\n', encoding="utf-8")
    return path


def identity_of(backend: ProcessBackend, tmp_path: Path, role: str | None, name: str) -> Any:
    async def scenario() -> Any:
        spec = launch_spec(tmp_path, "test/report", name=name, role=role)
        handle = await backend.start(spec)
        await wait_for(lambda: handle.exit_code() is not None, "the report")
        assert handle.exit_code() == 0, spec.log_path.read_text()
        await handle.stop(1.0)
        assert spec.work_dir is not None
        return json.loads((spec.work_dir / "identity.json").read_text())

    return asyncio.run(scenario())


def test_a_container_gets_its_roles_credentials_and_never_the_servers(
    tmp_path: Path, server_identity: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "images.toml"
    config.write_text(
        f'[images."test/report"]\ncommand = {json.dumps([sys.executable, "-c", REPORT])}\n',
        encoding="utf-8",
    )
    settings = Settings(
        state_dir=tmp_path / "state", region="eu-west-3", role_credentials=roles_file(tmp_path)
    )
    backend = ProcessBackend(settings, ImageRegistry.load(config), cgroups=False)

    mapped = identity_of(backend, tmp_path, ROLE, "mapped")
    env = mapped["env"]
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], env["AWS_SESSION_TOKEN"]) == (
        "AKIAMODEL",
        "model-secret",
        "model-token",
    )
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-3"
    assert mapped["chain"] == "AKIAMODEL"
    assert "AWS_PROFILE" not in env

    with caplog.at_level(logging.INFO, logger="polyhost.backends.process"):
        unmapped = identity_of(backend, tmp_path, UNMAPPED, "unmapped")
        identity_of(backend, tmp_path, UNMAPPED, "unmapped-again")
    env = unmapped["env"]
    assert not [key for key in env if key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    assert not [key for key in env if key.startswith("AWS_SESSION") or key == "AWS_PROFILE"]
    # Not through the environment, nor the server's home folder, nor the machine's role.
    assert unmapped["chain"] is None
    assert SERVER_SECRET not in json.dumps(unmapped) + json.dumps(mapped)
    told = [r.getMessage() for r in caplog.records if UNMAPPED in r.getMessage()]
    assert len(told) == 1 and "has no credentials configured" in told[0]
    assert "secret" not in caplog.text


def test_the_spec_carries_the_models_execution_role() -> None:
    model = {"PrimaryContainer": {"Image": "polyhost/sklearn"}, "ExecutionRoleArn": ROLE}
    spec = build_spec(
        endpoint_name="ep",
        endpoint_arn="arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep",
        config_name="ep",
        config={"ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "m"}]},
        models={"m": ("m", model)},
        revision=1,
    )
    assert spec.variants[0].execution_role_arn == ROLE
    assert spec_from_json(json.loads(json.dumps(spec_to_json(spec)))) == spec
    # A spec stored before the field existed still loads, without a role.
    stored = spec_to_json(spec)
    del stored["variants"][0]["execution_role_arn"]
    assert spec_from_json(stored).variants[0].execution_role_arn is None
    assert isinstance(spec, EndpointSpec) and isinstance(spec.variants[0], VariantSpec)
    assert isinstance(spec.variants[0].containers[0], ContainerSpec)


# -- through a real server -----------------------------------------------------------------------
def model_archive(tmp_path: Path) -> str:
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = INFERENCE.encode()
        member = tarfile.TarInfo("code/inference.py")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return f"file://{archive}"


@pytest.fixture
def server(tmp_path: Path, server_env: dict[str, str]) -> Iterator[PolyhostProcess]:
    proc = PolyhostProcess(
        state_dir=tmp_path / "state",
        image_config=write_image_config(tmp_path / "images.toml"),
        extra_args=["--role-credentials", str(roles_file(tmp_path)), "--region", "eu-west-3"],
        env=server_env,
    ).start()
    yield proc
    proc.stop()


def test_an_inference_script_returning_os_environ_shows_only_its_roles_credentials(
    server: PolyhostProcess, tmp_path: Path
) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    url = model_archive(tmp_path)
    for name, role in (("mapped", ROLE), ("unmapped", UNMAPPED)):
        sagemaker.create_model(
            ModelName=name,
            ExecutionRoleArn=role,
            PrimaryContainer={"Image": "polyhost/sklearn", "ModelDataUrl": url},
        )
        sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
            ],
        )
        sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    environments = {}
    for name in ("mapped", "unmapped"):
        assert wait_status(sagemaker, name, timeout=120)["EndpointStatus"] == "InService"
        answer = runtime.invoke_endpoint(
            EndpointName=name, Body=b"{}", ContentType="application/json"
        )
        environments[name] = json.loads(answer["Body"].read())
    assert environments["mapped"]["AWS_ACCESS_KEY_ID"] == "AKIAMODEL"
    assert environments["mapped"]["AWS_SECRET_ACCESS_KEY"] == "model-secret"
    assert "AWS_ACCESS_KEY_ID" not in environments["unmapped"]
    assert environments["unmapped"]["AWS_REGION"] == "eu-west-3"
    assert SERVER_SECRET not in json.dumps(environments)
    log = server.log()
    assert log.count(f"model role {UNMAPPED} has no credentials configured") == 1
    assert SERVER_SECRET not in log and "model-secret" not in log


def test_a_bad_role_credentials_file_stops_the_server_naming_the_role(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    roles = tmp_path / "roles.toml"
    roles.write_text(f'[roles."{ROLE}"]\nprofile = "no-such-profile"\n', encoding="utf-8")
    proc = PolyhostProcess(
        state_dir=tmp_path / "state",
        extra_args=["--role-credentials", str(roles)],
        env=server_env,
    )
    with pytest.raises(RuntimeError, match="polyhost exited at start") as raised:
        proc.start()
    assert ROLE in str(raised.value) and "no-such-profile" in str(raised.value)
    assert SERVER_SECRET not in str(raised.value)
    # And the loader the server calls says the same without starting anything.
    with pytest.raises(RoleCredentialsError, match="no such profile"):
        load_role_credentials(roles)
