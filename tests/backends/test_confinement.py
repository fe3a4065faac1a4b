"""What the server isolates, decided at start from the settings and what the machine allows."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from polyhost import cli
from polyhost.backends import confinement, netns
from polyhost.backends.base import ContainerUser
from polyhost.backends.confinement import ConfinementError, UserPool, parse_users, plan
from polyhost.http.admin.token import generated_token_file, load_admin_token
from polyhost.settings import Settings

CANNOT = "unshare(CLONE_NEWNET) failed: Operation not permitted"


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(state_dir=tmp_path / "state", **values)  # type: ignore[arg-type]


def auth(tmp_path: Path, **values: object) -> Settings:
    return settings(tmp_path, auth_file=tmp_path / "principals.json", **values)


def test_auth_on_a_machine_without_namespaces_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfinementError) as refused:
        plan(auth(tmp_path), probe=lambda: CANNOT, switch_users=lambda: True)
    assert str(refused.value) == (
        f"this machine cannot make network namespaces ({CANNOT}), and --auth-file shares this "
        "server between tenants: each instance's containers need a network of their own. Run "
        "the server as root (or with CAP_SYS_ADMIN), or pass --no-isolate to run without it "
        "(every container can then reach every other container's port and the admin listener)"
    )


def test_no_isolate_lets_it_start_and_says_what_that_means(tmp_path: Path) -> None:
    made = plan(auth(tmp_path, isolate=False), probe=lambda: CANNOT, switch_users=lambda: False)
    assert not made.networks and made.users is None
    assert made.warnings[0].startswith("--no-isolate: containers share the host's network")
    assert made.warnings[1].startswith("the server may not switch users (it is not root)")


def test_isolate_without_auth_needs_namespaces_too(tmp_path: Path) -> None:
    with pytest.raises(ConfinementError, match="and --isolate: each instance"):
        plan(settings(tmp_path, isolate=True), probe=lambda: CANNOT)
    assert plan(settings(tmp_path, isolate=True), probe=lambda: None).networks


def test_without_auth_nothing_is_isolated(tmp_path: Path) -> None:
    made = plan(settings(tmp_path), probe=lambda: CANNOT, switch_users=lambda: True)
    assert (made.networks, made.users, made.warnings) == (False, None, [])


def test_ray_is_not_isolated_and_says_so(tmp_path: Path) -> None:
    made = plan(auth(tmp_path, backend="ray"), probe=lambda: None, switch_users=lambda: True)
    assert not made.networks and made.users is None
    assert made.warnings == [
        "the ray backend does not isolate containers: they share their node's network and run "
        "as the node agent's user, so a container can reach another's port directly"
    ]
    with pytest.raises(ConfinementError, match="the ray backend does not isolate"):
        plan(settings(tmp_path, backend="ray", isolate=True), probe=lambda: None)


def test_a_docker_network_shared_by_every_instance_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfinementError, match="--docker-network models puts containers"):
        plan(auth(tmp_path, backend="docker", docker_network="models"), probe=lambda: None)


def test_container_users(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o711)
    made = plan(auth(tmp_path, container_user="3000-3009"), probe=lambda: None,
                switch_users=lambda: True)  # fmt: skip
    assert made.users is not None and (made.users.first, made.users.last) == (3000, 3009)
    with pytest.raises(ConfinementError, match="may not switch users"):
        plan(auth(tmp_path, container_user="3000"), probe=lambda: None, switch_users=lambda: False)
    server = plan(auth(tmp_path, container_user="server"), probe=lambda: None)
    assert server.users is None
    assert server.warnings == [
        "--container-user server: process containers run as the server's user and can read "
        "what it reads: the state dir, the auth file, the admin token"
    ]


def test_parse_users() -> None:
    assert parse_users("auto") == confinement.DEFAULT_USERS
    assert parse_users("server") is None
    assert parse_users("1234") == (1234, 1234)
    assert parse_users("10-20") == (10, 20)
    for bad in ("0", "20-10", "root", "-5"):
        with pytest.raises(ValueError):
            parse_users(bad)


def test_one_uid_per_instance() -> None:
    pool = UserPool(10, 12)
    users = {pool.allocate().uid for _ in range(3)}
    assert users == {10, 11, 12}
    with pytest.raises(ConfinementError, match="every container user of 10-12"):
        pool.allocate()
    pool.release(ContainerUser(11, 11))
    assert pool.allocate().uid == 11


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A folder other users may enter (pytest's own are 0700: nothing in them is reachable)."""
    folder = Path(tempfile.mkdtemp(prefix="polyhost-confinement-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_protect_files_closes_the_state_dir(open_tmp: Path) -> None:
    tmp_path = open_tmp
    state = tmp_path / "state"
    state.mkdir()
    (state / "polyhost.db").write_text("x")
    os.chmod(state / "polyhost.db", 0o644)
    old_log = state / "containers" / "ep" / "r1" / "container.log"
    old_log.parent.mkdir(parents=True)
    old_log.write_text("x")
    os.chmod(old_log, 0o644)
    principals = tmp_path / "principals.json"
    principals.write_text("{}")
    os.chmod(principals, 0o644)
    os.chmod(tmp_path, 0o755)
    umask = os.umask(0o022)
    try:
        confinement.protect_files(Settings(state_dir=state, auth_file=principals), None)
        assert os.umask(0o077) == 0o077
    finally:
        os.umask(umask)

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(state) == 0o711
    assert mode(state / "polyhost.db") == 0o600
    assert mode(old_log) == 0o600
    assert mode(principals) == 0o640


def test_a_generated_admin_token_is_private_and_kept(tmp_path: Path) -> None:
    path = generated_token_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = load_admin_token(path)
    assert len(token) == 64
    assert generated_token_file(tmp_path) == path and load_admin_token(path) == token
    os.chmod(path, 0o644)  # readable by others: replaced by a new one
    generated_token_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and load_admin_token(path) != token


def test_the_cli_refuses_auth_without_namespaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    principals = tmp_path / "principals.json"
    principals.write_text('{"principals": []}')
    monkeypatch.setattr(netns, "probe", lambda: CANNOT)
    code = cli.main(
        ["serve", "--state-dir", str(tmp_path / "state"), "--auth-file", str(principals),
         "--port", "0", "--admin-port", "0"]
    )  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"polyhost: this machine cannot make network namespaces ({CANNOT})")
    assert "pass --no-isolate" in error
