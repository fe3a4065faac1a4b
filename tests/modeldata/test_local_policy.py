"""The local model data policy: which `file://` paths a container may be given a copy of.

Each case states the path, the policy, and the sentence a tenant reads (at CreateModel, in a
ValidationException; at deploy, in a FailureReason).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from polyhost.modeldata.local_policy import (
    Forbidden,
    LocalModelPolicy,
    LocalPathRefused,
    docker_sockets,
    file_url_path,
    opened_path,
)
from polyhost.settings import Settings


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A machine in small: allowed models, the server's state, secrets, and elsewhere."""
    paths = {
        "models": tmp_path / "srv" / "models",
        "state": tmp_path / "srv" / "state",
        "auth": tmp_path / "etc" / "principals.json",
        "token": tmp_path / "etc" / "admin.token",
        "elsewhere": tmp_path / "home" / "someone",
    }
    for name in ("models", "state", "elsewhere"):
        paths[name].mkdir(parents=True)
    paths["auth"].parent.mkdir(parents=True)
    paths["auth"].write_text("{}")
    paths["token"].write_text("t" * 32)
    (paths["models"] / "m").mkdir()
    return paths


def server_policy(
    layout: dict[str, Path], *, auth: bool, dirs: tuple[Path, ...] = ()
) -> LocalModelPolicy:
    settings = Settings(
        state_dir=layout["state"],
        auth_file=layout["auth"] if auth else None,
        admin_token_file=layout["token"],
        allow_model_dirs=dirs,
    )
    return LocalModelPolicy.from_settings(settings)


def test_without_auth_any_folder_but_the_servers_own_is_taken(layout: dict[str, Path]) -> None:
    policy = server_policy(layout, auth=False)
    assert policy.allowed is None
    assert policy.refusal(layout["elsewhere"]) is None
    assert policy.refusal(layout["models"] / "m") is None
    assert policy.refusal(Path("/")) == (
        "/ holds the server's state dir, which is never served to a container. Name a folder "
        "or archive that holds only the model"
    )


def test_with_auth_and_no_allowed_folder_file_urls_are_refused(layout: dict[str, Path]) -> None:
    policy = server_policy(layout, auth=True)
    assert policy.allowed == ()
    assert policy.refusal(layout["models"] / "m") == (
        f"{layout['models'] / 'm'}: this server takes file:// model data only from folders its "
        "operator allows, and it allows none. Use s3:// model data, or start the server with "
        "--allow-model-dir DIR naming the folder that holds the models"
    )


def test_with_auth_only_paths_under_an_allowed_folder_are_taken(layout: dict[str, Path]) -> None:
    models = layout["models"]
    policy = server_policy(layout, auth=True, dirs=(models,))
    assert policy.refusal(models / "m") is None
    assert policy.refusal(models / "m" / "model.tar.gz") is None  # need not exist yet
    assert policy.refusal(models) is None
    assert policy.refusal(layout["elsewhere"]) == (
        f"{layout['elsewhere']} is outside the folders this server allows model data from "
        f"({models}). Put the model under one of them, use s3:// model data, or start the "
        "server with --allow-model-dir naming its folder"
    )
    # `..` does not climb out: the path is resolved before it is compared.
    assert policy.refusal(models / ".." / "state") is not None


def test_folders_named_without_auth_restrict_too(layout: dict[str, Path]) -> None:
    policy = server_policy(layout, auth=False, dirs=(layout["models"],))
    assert policy.refusal(layout["models"] / "m") is None
    assert policy.refusal(layout["elsewhere"]) is not None


def test_symlinks_are_followed_before_the_check(layout: dict[str, Path]) -> None:
    models = layout["models"]
    policy = server_policy(layout, auth=True, dirs=(models,))
    (models / "escape").symlink_to(layout["elsewhere"])
    assert policy.refusal(models / "escape") == (
        f"{models / 'escape'} (which resolves to {layout['elsewhere']}) is outside the folders "
        f"this server allows model data from ({models}). Put the model under one of them, use "
        "s3:// model data, or start the server with --allow-model-dir naming its folder"
    )
    (layout["elsewhere"] / "into-models").symlink_to(models / "m")
    assert policy.refusal(layout["elsewhere"] / "into-models") is None  # it lies in models/m
    # An allowed folder that is itself a link counts where it leads.
    (layout["elsewhere"].parent / "models-link").symlink_to(models)
    linked = server_policy(layout, auth=True, dirs=(layout["elsewhere"].parent / "models-link",))
    assert linked.refusal(models / "m") is None


@pytest.mark.parametrize(
    ("where", "relation", "what", "auths"),
    [
        ("srv", "holds", "the server's state dir", (True, False)),
        ("srv/state", "is", "the server's state dir", (True, False)),
        ("srv/state/containers/ep/logs", "lies inside", "the server's state dir", (True, False)),
        ("etc", "holds", "the server's auth file", (True,)),
        ("etc/principals.json", "is", "the server's auth file", (True,)),
        ("etc/admin.token", "is", "the admin token file", (True, False)),
    ],
)
def test_the_servers_own_files_are_never_served(
    layout: dict[str, Path],
    tmp_path: Path,
    where: str,
    relation: str,
    what: str,
    auths: tuple[bool, ...],
) -> None:
    """Even under an allowed folder (here: all of tmp_path)."""
    for auth in auths:
        policy = server_policy(layout, auth=auth, dirs=(tmp_path,))
        path = tmp_path / where
        assert policy.refusal(path) == (
            f"{path} {relation} {what}, which is never served to a container. Name a folder or "
            "archive that holds only the model"
        )
        assert policy.refusal(tmp_path / "srv" / "models") is None  # the state dir's neighbour


def test_a_link_to_the_state_dir_is_refused_as_the_state_dir(layout: dict[str, Path]) -> None:
    models = layout["models"]
    (models / "sneaky").symlink_to(layout["state"])
    policy = server_policy(layout, auth=False)
    reason = policy.refusal(models / "sneaky")
    assert reason is not None
    assert reason.startswith(f"{models / 'sneaky'} (which resolves to {layout['state']}) is ")


def test_the_docker_socket_is_forbidden(layout: dict[str, Path], tmp_path: Path) -> None:
    defaults = [Path("/var/run/docker.sock"), Path("/run/polyhost/docker.sock")]
    assert docker_sockets({}) == defaults
    sockets = docker_sockets({"DOCKER_HOST": f"unix://{tmp_path}/run/docker.sock"})
    assert sockets == [*defaults, tmp_path / "run" / "docker.sock"]
    assert docker_sockets({"DOCKER_HOST": "tcp://10.0.0.1:2376"}) == defaults
    policy = server_policy(layout, auth=False)
    reason = policy.refusal(Path("/var/run"))
    assert reason is not None and "holds the Docker daemon's socket" in reason


def test_check_raises_a_failure_reason(layout: dict[str, Path]) -> None:
    policy = server_policy(layout, auth=True, dirs=(layout["models"],))
    assert policy.check(layout["models"] / "m", "file:///m") == layout["models"] / "m"
    with pytest.raises(LocalPathRefused) as refused:
        policy.check(layout["elsewhere"], "file:///x")
    assert str(refused.value).startswith(f"Model data file:///x was refused: {layout['elsewhere']}")
    assert str(refused.value).endswith("naming its folder.")


def test_an_opened_descriptor_is_checked_where_it_really_is(layout: dict[str, Path]) -> None:
    """A path swapped for a link after the check: the descriptor shows where it went."""
    models = layout["models"]
    policy = server_policy(layout, auth=True, dirs=(models,))
    fd = os.open(layout["elsewhere"], os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert opened_path(fd, models / "m") in (layout["elsewhere"], None)
        with pytest.raises(LocalPathRefused, match="was refused"):
            policy.check_opened(fd, models / "m", "file:///m")
    finally:
        os.close(fd)
    fd = os.open(models / "m", os.O_RDONLY | os.O_DIRECTORY)
    try:
        policy.check_opened(fd, models / "m", "file:///m")  # still where it was: no error
    finally:
        os.close(fd)


def test_forbidden_inodes_name_the_files_that_exist(layout: dict[str, Path]) -> None:
    policy = LocalModelPolicy(
        None,
        (
            Forbidden(layout["auth"], "the server's auth file"),
            Forbidden(layout["state"] / "missing", "nothing"),
        ),
    )
    info = os.stat(layout["auth"])
    assert policy.forbidden_inodes() == {(info.st_dev, info.st_ino): "the server's auth file"}


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("file:///srv/models/m", Path("/srv/models/m")),
        ("file://localhost/srv/m%20x", Path("/srv/m x")),
        ("FILE:///srv", Path("/srv")),
        ("file://other-host/srv", None),
        ("s3://bucket/key", None),
        ("https://example.com/m.tar.gz", None),
    ],
)
def test_file_url_path(url: str, path: Path | None) -> None:
    assert file_url_path(url) == path


def test_allow_model_dir_is_repeatable_and_read_from_the_environment() -> None:
    from polyhost.cli import build_parser

    args = build_parser().parse_args(
        ["serve", "--allow-model-dir", "/srv/models", "--allow-model-dir", "/data/m,1"]
    )
    assert args.allow_model_dirs == [Path("/srv/models"), Path("/data/m,1")]
    settings = Settings.from_env({"POLYHOST_ALLOW_MODEL_DIR": f"/srv/models{os.pathsep}/data"})
    assert settings.allow_model_dirs == (Path("/srv/models"), Path("/data"))
    assert Settings().allow_model_dirs == ()
