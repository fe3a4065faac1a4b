"""Which identity an asynchronous request acts as, from a real role-credentials file: the model
role's keys where the file maps the role, the server's default chain otherwise, rotated keys
after the refresh, and a broken source refused by name rather than replaced by the server's."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyhost.asyncinf.credentials import AwsClients, CredentialsUnavailable
from polyhost.backends.role_credentials import load_role_credentials

ROLE = "arn:aws:iam::123456789012:role/AsyncRole"
UNMAPPED = "arn:aws:iam::123456789012:role/Unmapped"


def roles_file(folder: Path, key_id: str) -> Path:
    (folder / "async-role.ini").write_text(
        f"aws_access_key_id = {key_id}\naws_secret_access_key = secret-of-{key_id}\n",
        encoding="utf-8",
    )
    roles = folder / "roles.toml"
    roles.write_text(f'[roles."{ROLE}"]\ncredentials_file = "async-role.ini"\n', encoding="utf-8")
    return roles


def test_a_mapped_role_gets_its_keys_and_the_rest_the_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASERVER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "server-secret")
    clients = AwsClients(load_role_credentials(roles_file(tmp_path, "AKIAROLE")), 5.0)
    found = clients.credentials(ROLE)
    assert found is not None and found.access_key_id == "AKIAROLE"
    assert clients.credentials(UNMAPPED) is None
    assert clients.credentials(None) is None
    role_s3 = clients.client("s3", ROLE)
    assert role_s3._request_signer._credentials.access_key == "AKIAROLE"
    for role in (UNMAPPED, None):
        server_s3 = clients.client("s3", role)
        assert server_s3._request_signer._credentials.access_key == "AKIASERVER"
    # Clients are kept: made once per service and identity.
    assert clients.client("s3", ROLE) is role_s3
    assert clients.client("sns", ROLE, "us-east-1") is not role_s3


def test_rotated_keys_are_used_after_the_refresh(tmp_path: Path) -> None:
    now = [0.0]
    roles = load_role_credentials(roles_file(tmp_path, "AKIAFIRST"))
    clients = AwsClients(roles, 5.0, refresh_s=60.0, clock=lambda: now[0])
    first = clients.client("s3", ROLE)
    roles_file(tmp_path, "AKIASECOND")
    assert clients.client("s3", ROLE) is first  # within the refresh: the keys read before
    now[0] += 61.0
    second = clients.client("s3", ROLE)
    assert second is not first
    assert second._request_signer._credentials.access_key == "AKIASECOND"


def test_a_broken_source_is_refused_by_name_never_replaced_by_the_servers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASERVER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "server-secret")
    now = [0.0]
    roles = load_role_credentials(roles_file(tmp_path, "AKIAROLE"))
    clients = AwsClients(roles, 5.0, clock=lambda: now[0])
    (tmp_path / "async-role.ini").unlink()
    now[0] += 61.0
    with pytest.raises(CredentialsUnavailable) as refused:
        clients.client("s3", ROLE)
    message = str(refused.value)
    assert ROLE in message and "async-role.ini" in message
    assert "secret-of" not in message
