"""A tenant's `file://` model data reaches only what the operator allows, and only as a copy.

A real server with `--auth-file`, real signed boto3 clients. The tenant is a principal allowed
CreateModel, CreateEndpoint and InvokeEndpoint on its own `a-*` names only; before the local
model data policy, `ModelDataUrl=file:///` gave its container the whole host (the auth file with
every secret, the state database, every tenant's logs), bind-mounted or used as it is.

The operator's machine, in small (`layout`):

    srv/                 allowed with --allow-model-dir (it also holds the server's own files)
      state/             the state dir: database, logs, the model cache
      principals.json    the auth file
      models/m/          a tenant's model folder
    outside/secret.txt   somewhere no --allow-model-dir names

The container (`tests/support/containers/model_reader.py`) reports what it finds in its model
folder, so each test reads what a model really got.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.endpoints import create_config, create_model, wait_status
from tests.support.errors import client_error
from tests.support.server import ACCOUNT, CONTAINERS, REGION, PolyhostProcess

READER_IMAGE = "polyhost-test/model-reader:1"
ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"


def principal(name: str, key: str, statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": name,
        "access_key_id": key,
        "secret_access_key": f"{name}-secret-key-0123456789abcdef",
        "policies": [{"Version": "2012-10-17", "Statement": statements}],
    }


PRINCIPALS = {
    "principals": [
        principal(
            "tenant",
            "AKIATENANT0000000001",
            [
                {
                    "Effect": "Allow",
                    "Action": [
                        "sagemaker:CreateModel",
                        "sagemaker:CreateEndpointConfig",
                        "sagemaker:CreateEndpoint",
                        "sagemaker:Describe*",
                        "sagemaker:Delete*",
                        "sagemaker:InvokeEndpoint",
                    ],
                    "Resource": [
                        f"{ARN}:model/a-*",
                        f"{ARN}:endpoint-config/a-*",
                        f"{ARN}:endpoint/a-*",
                    ],
                }
            ],
        )
    ]
}


def tenant(server: PolyhostProcess, service: str) -> Any:
    entry = PRINCIPALS["principals"][0]
    return boto3.client(
        service,
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=entry["access_key_id"],
        aws_secret_access_key=entry["secret_access_key"],
        config=Config(retries={"max_attempts": 1}, read_timeout=60),
    )


def write_images(path: Path) -> Path:
    path.write_text(
        f'[images."{READER_IMAGE}"]\n'
        f'command = ["{sys.executable}", "{CONTAINERS / "model_reader.py"}"]\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("tenant-model-data")
    srv = base / "srv"
    paths = {
        "base": base,
        "srv": srv,
        "state": srv / "state",
        "auth": srv / "principals.json",
        "models": srv / "models",
        "outside": base / "outside",
    }
    paths["models"].mkdir(parents=True)
    paths["outside"].mkdir()
    (paths["outside"] / "secret.txt").write_text("the operator's secret")
    paths["auth"].write_text(json.dumps(PRINCIPALS), encoding="utf-8")
    return paths


@pytest.fixture(scope="module")
def shared(layout: dict[str, Path]) -> Iterator[PolyhostProcess]:
    """A server shared by tenants: auth on, model data allowed from srv/ only."""
    proc = PolyhostProcess(
        state_dir=layout["state"],
        image_config=write_images(layout["base"] / "images.toml"),
        extra_args=[
            *("--auth-file", str(layout["auth"])),
            *("--allow-model-dir", str(layout["srv"])),
        ],
    ).start()
    yield proc
    proc.stop()


def model_folder(parent: Path, name: str, content: str) -> Path:
    folder = parent / name
    (folder / "code").mkdir(parents=True)
    (folder / "model.txt").write_text(content)
    (folder / "code" / "inference.py").write_text("# model code\n")
    (folder / "latest.txt").symlink_to("model.txt")  # a link that stays inside: kept
    return folder


def create(client: Any, name: str, url: str) -> None:
    create_model(client, name, [{"Image": READER_IMAGE, "ModelDataUrl": url}])


def refusal(client: Any, name: str, url: str) -> str:
    with pytest.raises(ClientError) as refused:
        create(client, name, url)
    code, status, message = client_error(refused)
    assert (code, status) == ("ValidationException", 400)
    return message


def deploy(client: Any, name: str, url: str) -> dict[str, Any]:
    create(client, name, url)
    create_config(client, name, [("AllTraffic", name, 1, 1.0)])
    client.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return wait_status(client, name, timeout=90)


def ask(runtime: Any, name: str, extra: list[str] | None = None) -> dict[str, Any]:
    answer = runtime.invoke_endpoint(
        EndpointName=name, Body=json.dumps(extra or []).encode(), ContentType="application/json"
    )
    report: dict[str, Any] = json.loads(answer["Body"].read())
    return report


def violation(url: str, reason: str) -> str:
    return (
        f"1 validation error detected: Value '{url}' at 'primaryContainer.modelDataUrl' failed "
        "to satisfy constraint: ModelDataUrl must name model data this server may serve to a "
        f"container: {reason}"
    )


# --- refused at CreateModel ----------------------------------------------------------------------


def test_the_whole_host_is_refused(shared: PolyhostProcess, layout: dict[str, Path]) -> None:
    message = refusal(tenant(shared, "sagemaker"), "a-root", "file:///")
    assert message == violation(
        "file:///",
        f"/ is outside the folders this server allows model data from ({layout['srv']}). Put "
        "the model under one of them, use s3:// model data, or start the server with "
        "--allow-model-dir naming its folder",
    )


@pytest.mark.parametrize(
    ("where", "relation", "what"),
    [
        ("srv", "holds", "the server's state dir"),
        ("srv/state", "is", "the server's state dir"),
        ("srv/state/containers", "lies inside", "the server's state dir"),
        ("srv/principals.json", "is", "the server's auth file"),
    ],
)
def test_the_servers_own_files_are_refused_even_under_an_allowed_folder(
    shared: PolyhostProcess, layout: dict[str, Path], where: str, relation: str, what: str
) -> None:
    path = layout["base"] / where
    url = f"file://{path}"
    assert refusal(tenant(shared, "sagemaker"), "a-own", url) == violation(
        url,
        f"{path} {relation} {what}, which is never served to a container. Name a folder or "
        "archive that holds only the model",
    )


def test_a_link_into_the_state_dir_is_refused_by_where_it_leads(
    shared: PolyhostProcess, layout: dict[str, Path]
) -> None:
    link = layout["models"] / "looks-innocent"
    link.symlink_to(layout["state"])
    url = f"file://{link}"
    assert refusal(tenant(shared, "sagemaker"), "a-link", url) == violation(
        url,
        f"{link} (which resolves to {layout['state']}) is the server's state dir, which is never "
        "served to a container. Name a folder or archive that holds only the model",
    )


def test_without_an_allowed_folder_file_urls_are_refused_under_auth(
    layout: dict[str, Path], tmp_path: Path
) -> None:
    folder = model_folder(tmp_path, "m", "v1")
    proc = PolyhostProcess(
        state_dir=tmp_path / "state",
        image_config=write_images(tmp_path / "images.toml"),
        extra_args=["--auth-file", str(layout["auth"])],
    ).start()
    try:
        url = f"file://{folder}"
        assert refusal(tenant(proc, "sagemaker"), "a-none", url) == violation(
            url,
            f"{folder}: this server takes file:// model data only from folders its operator "
            "allows, and it allows none. Use s3:// model data, or start the server with "
            "--allow-model-dir DIR naming the folder that holds the models",
        )
    finally:
        proc.stop()


# --- served as a copy ----------------------------------------------------------------------------


def test_an_allowed_folder_is_served_as_a_copy_in_the_cache(
    shared: PolyhostProcess, layout: dict[str, Path]
) -> None:
    folder = model_folder(layout["models"], "m", "v1")
    sagemaker, runtime = tenant(shared, "sagemaker"), tenant(shared, "sagemaker-runtime")
    description = deploy(sagemaker, "a-copy", f"file://{folder}")
    assert description["EndpointStatus"] == "InService", description.get("FailureReason")
    seen = ask(runtime, "a-copy")
    cache = (layout["state"] / "artifacts" / "models").resolve()
    assert Path(seen["resolved"]).parent == cache  # the copy, never the folder itself
    assert seen["entries"] == {
        "code": "<dir>",
        "code/inference.py": "# model code\n",
        "latest.txt": "-> model.txt",
        "model.txt": "v1",
    }
    # The original changes; what the running container sees does not.
    (folder / "model.txt").write_text("v2 written after the deploy")
    (folder / "added.txt").write_text("new")
    again = ask(runtime, "a-copy")
    assert again["entries"] == seen["entries"] and again["resolved"] == seen["resolved"]


def test_a_link_out_of_the_allowed_folder_is_not_followed(
    shared: PolyhostProcess, layout: dict[str, Path]
) -> None:
    folder = model_folder(layout["models"], "leaky", "v1")
    (folder / "secret.txt").symlink_to(layout["outside"] / "secret.txt")
    sagemaker = tenant(shared, "sagemaker")
    description = deploy(sagemaker, "a-leaky", f"file://{folder}")
    assert description["EndpointStatus"] == "Failed"
    assert description["FailureReason"] == (
        "Could not get the model data of container a-leaky for production variant "
        f"AllTraffic: Model data file://{folder} was refused: 'secret.txt' is a symbolic link to "
        f"'{layout['outside'] / 'secret.txt'}', outside the model folder; copy that file into "
        "the folder, or use s3:// model data."
    )


def test_a_link_swapped_after_create_model_fails_the_endpoint(
    shared: PolyhostProcess, layout: dict[str, Path]
) -> None:
    """Allowed when the model was created; re-pointed outside before the endpoint fetched it."""
    folder = model_folder(layout["models"], "swapped-target", "v1")
    current = layout["models"] / "current"
    current.symlink_to(folder)
    sagemaker = tenant(shared, "sagemaker")
    create(sagemaker, "a-swap", f"file://{current}")
    current.unlink()
    current.symlink_to(layout["outside"])
    create_config(sagemaker, "a-swap", [("AllTraffic", "a-swap", 1, 1.0)])
    sagemaker.create_endpoint(EndpointName="a-swap", EndpointConfigName="a-swap")
    description = wait_status(sagemaker, "a-swap", timeout=90)
    assert description["EndpointStatus"] == "Failed"
    reason = description["FailureReason"]
    assert f"Model data file://{current} was refused: {current} (which resolves to " in reason
    assert "is outside the folders this server allows model data from" in reason


# --- the developer server without auth -----------------------------------------------------------


def test_without_auth_any_folder_is_served_as_a_copy_but_not_the_servers_own(
    tmp_path: Path,
) -> None:
    folder = model_folder(tmp_path / "work", "m", "dev")
    proc = PolyhostProcess(
        state_dir=tmp_path / "state", image_config=write_images(tmp_path / "images.toml")
    ).start()
    try:
        sagemaker, runtime = proc.sagemaker(), proc.runtime()
        description = deploy(sagemaker, "dev", f"file://{folder}")
        assert description["EndpointStatus"] == "InService", description.get("FailureReason")
        seen = ask(runtime, "dev")
        assert seen["entries"]["model.txt"] == "dev"
        cache = (tmp_path / "state" / "artifacts" / "models").resolve()
        assert Path(seen["resolved"]).parent == cache
        message = refusal(sagemaker, "dev-root", f"file://{tmp_path}")
        assert message == violation(
            f"file://{tmp_path}",
            f"{tmp_path} holds the server's state dir, which is never served to a container. "
            "Name a folder or archive that holds only the model",
        )
    finally:
        proc.stop()
