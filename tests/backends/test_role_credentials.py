"""The role-credentials file: ExecutionRoleArn → a profile or credentials file, checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyhost.backends.role_credentials import (
    AwsCredentials,
    RoleCredentialsError,
    load_role_credentials,
)

ROLE = "arn:aws:iam::123456789012:role/ModelRole"
OTHER = "arn:aws:iam::123456789012:role/service-role/OtherRole"
SERVER_SECRET = "server-secret-never-handed-out"


@pytest.fixture(autouse=True)
def aws_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The server's own AWS setup: its credentials in the environment and a profile file."""
    shared = tmp_path / "aws-credentials"
    shared.write_text(
        "[default]\naws_access_key_id = SERVERKEY\naws_secret_access_key = "
        f"{SERVER_SECRET}\n"
        "[model-role]\naws_access_key_id = MODELKEY\naws_secret_access_key = model-secret\n"
        "aws_session_token = model-token\n"
        "[no-keys]\nregion = eu-west-1\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(shared))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "SERVERKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SERVER_SECRET)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return shared


def write(tmp_path: Path, text: str, name: str = "roles.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_profile_and_a_credentials_file(tmp_path: Path) -> None:
    (tmp_path / "other.ini").write_text(
        "aws_access_key_id = OTHERKEY\naws_secret_access_key = other-secret\n", encoding="utf-8"
    )
    roles = load_role_credentials(
        write(
            tmp_path,
            f'[roles."{ROLE}"]\nprofile = "model-role"\n'
            f'[roles."{OTHER}"]\ncredentials_file = "other.ini"\n',  # relative to the file
        )
    )
    assert roles.roles == sorted([ROLE, OTHER])
    assert roles.resolve(ROLE) == AwsCredentials("MODELKEY", "model-secret", "model-token")
    assert roles.resolve(OTHER) == AwsCredentials("OTHERKEY", "other-secret", None)
    assert roles.resolve("arn:aws:iam::123456789012:role/Unlisted") is None
    assert roles.resolve(None) is None
    assert not roles.knows(None) and roles.knows(ROLE)


def test_no_file_means_no_role_has_credentials() -> None:
    roles = load_role_credentials(None)
    assert roles.roles == [] and roles.path is None
    assert roles.resolve(ROLE) is None


def test_a_credentials_file_with_a_section(tmp_path: Path) -> None:
    (tmp_path / "one.ini").write_text(
        "[default]\naws_access_key_id = K\naws_secret_access_key = S\naws_session_token = T\n",
        encoding="utf-8",
    )
    roles = load_role_credentials(
        write(tmp_path, f'[roles."{ROLE}"]\ncredentials_file = "{tmp_path / "one.ini"}"\n')
    )
    assert roles.resolve(ROLE) == AwsCredentials("K", "S", "T")


def test_credentials_are_read_again_at_each_resolve(tmp_path: Path) -> None:
    ini = tmp_path / "rotating.ini"
    ini.write_text("aws_access_key_id = OLD\naws_secret_access_key = s1\n", encoding="utf-8")
    roles = load_role_credentials(
        write(tmp_path, f'[roles."{ROLE}"]\ncredentials_file = "{ini}"\n')
    )
    ini.write_text("aws_access_key_id = NEW\naws_secret_access_key = s2\n", encoding="utf-8")
    resolved = roles.resolve(ROLE)
    assert resolved is not None and resolved.access_key_id == "NEW"


def test_a_secret_is_never_in_a_repr() -> None:
    text = repr(AwsCredentials("KEY", "the-secret", "the-token"))
    assert "KEY" in text and "the-secret" not in text and "the-token" not in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[roles\n", "cannot read role credentials"),
        ('role = "x"\n', "unknown key(s) role"),
        ("roles = 3\n", "roles must be tables"),
        ('[roles]\n"arn:aws:iam::123456789012:role/R" = "p"\n', "must be a table"),
        ('[roles."ModelRole"]\nprofile = "p"\n', "not an IAM role ARN"),
        (f'[roles."{ROLE}"]\n', "needs exactly one of profile or credentials_file"),
        (
            f'[roles."{ROLE}"]\nprofile = "model-role"\ncredentials_file = "x"\n',
            "needs exactly one of profile or credentials_file",
        ),
        (f'[roles."{ROLE}"]\nprofil = "model-role"\n', "unknown key(s) profil"),
        (f'[roles."{ROLE}"]\nprofile = ""\n', "profile must be a non-empty string"),
        (f'[roles."{ROLE}"]\nprofile = "nope"\n', 'profile "nope"): no such profile'),
        # A profile without keys does not fall back on the server's own (environment) keys.
        (f'[roles."{ROLE}"]\nprofile = "no-keys"\n', "the profile holds no credentials"),
        (f'[roles."{ROLE}"]\ncredentials_file = "missing.ini"\n', "cannot read it"),
    ],
)
def test_a_bad_file_is_refused_naming_the_role_and_the_fix(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RoleCredentialsError) as raised:
        load_role_credentials(path)
    assert message in str(raised.value)
    assert str(path) in str(raised.value)
    if ROLE in text and "needs" not in message and "unknown" not in message:
        assert ROLE in str(raised.value)
    assert SERVER_SECRET not in str(raised.value)


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        ("aws_access_key_id = K\n", "aws_secret_access_key missing"),
        ("aws_secret_access_key = do-not-show\n", "aws_access_key_id missing"),
        ("[a]\naws_access_key_id = K\n[b]\naws_secret_access_key = do-not-show\n", "one section"),
        ("[a\naws_secret_access_key = do-not-show\n", "not an ini-style file"),
    ],
)
def test_a_bad_credentials_file_is_refused_without_quoting_it(
    tmp_path: Path, ini: str, message: str
) -> None:
    (tmp_path / "bad.ini").write_text(ini, encoding="utf-8")
    path = write(tmp_path, f'[roles."{ROLE}"]\ncredentials_file = "bad.ini"\n')
    with pytest.raises(RoleCredentialsError) as raised:
        load_role_credentials(path)
    text = str(raised.value)
    assert message in text and ROLE in text and "bad.ini" in text
    assert "do-not-show" not in text
