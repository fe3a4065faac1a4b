"""Which AWS credentials a container gets: those of its model's ExecutionRoleArn, and no others.

On SageMaker a container acts as the model's execution role. polyhost cannot assume roles for
it, so the server is told, per role, where that role's credentials are (`--role-credentials`,
a TOML file):

    [roles."arn:aws:iam::123456789012:role/ModelRole"]
    profile = "model-role"              # a profile of the server's shared credentials/config
                                        # files (~/.aws/credentials, AWS_SHARED_CREDENTIALS_FILE)

    [roles."arn:aws:iam::123456789012:role/OtherRole"]
    credentials_file = "other-role.ini" # aws_access_key_id, aws_secret_access_key and optionally
                                        # aws_session_token; relative to this file's folder

A container of a model whose role is listed gets that role's credentials as AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN; a role that is not listed gets none. The server's
own credentials (environment, instance metadata) are never handed out: a profile is resolved
with botocore's environment and metadata providers removed.

Every role is resolved once when the file is loaded, so a bad file stops the server at start
with a message naming the role; each container start resolves its role again, so rotated
credentials reach containers started (or restarted) afterwards. Messages never quote a secret.
"""

from __future__ import annotations

import configparser
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.exceptions
import botocore.session

# SageMaker's pattern for ExecutionRoleArn.
ROLE_ARN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
# Providers that would hand out the server's own credentials rather than the profile's.
_SERVER_PROVIDERS = ("env", "container-role", "iam-role", "boto-config", "ec2-credentials-file")
_KEYS = ("profile", "credentials_file")
MAX_FILE_BYTES = 1024 * 1024


class RoleCredentialsError(Exception):
    """The role-credentials file, or one role's source, is unusable; the message says which."""


@dataclass(frozen=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    def environment(self) -> dict[str, str]:
        env = {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }
        if self.session_token:
            env["AWS_SESSION_TOKEN"] = self.session_token
        return env


@dataclass(frozen=True)
class CredentialSource:
    """Where one role's credentials come from: a profile or a credentials file."""

    role_arn: str
    profile: str | None = None
    credentials_file: Path | None = None

    def describe(self) -> str:
        if self.profile is not None:
            return f'profile "{self.profile}"'
        return f"credentials file {self.credentials_file}"

    def resolve(self) -> AwsCredentials:
        """Read the credentials now; RoleCredentialsError names the role and the source."""
        try:
            if self.profile is not None:
                return _from_profile(self.profile)
            assert self.credentials_file is not None
            return _from_file(self.credentials_file)
        except RoleCredentialsError as error:
            raise RoleCredentialsError(
                f"credentials of role {self.role_arn} ({self.describe()}): {error}"
            ) from None


def _from_profile(profile: str) -> AwsCredentials:
    try:
        session = botocore.session.Session(profile=profile)
        resolver = session.get_component("credential_provider")
        for method in _SERVER_PROVIDERS:
            resolver.remove(method)
        credentials = resolver.load_credentials()
    except botocore.exceptions.ProfileNotFound:
        raise RoleCredentialsError(
            "no such profile in the server's AWS credentials or config files"
        ) from None
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as error:
        raise RoleCredentialsError(f"botocore cannot load it: {type(error).__name__}") from None
    if credentials is None:
        raise RoleCredentialsError("the profile holds no credentials")
    frozen = credentials.get_frozen_credentials()
    if not frozen.access_key or not frozen.secret_key:
        raise RoleCredentialsError("the profile holds no access key and secret key")
    return AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token or None)


def _from_file(path: Path) -> AwsCredentials:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise RoleCredentialsError(f"the file is larger than {MAX_FILE_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise RoleCredentialsError(f"cannot read it: {reason or error}") from None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        try:
            parser.read_string(text)
        except configparser.MissingSectionHeaderError:
            parser.read_string("[default]\n" + text)
    except configparser.Error as error:
        line = getattr(error, "lineno", None)
        where = f" (line {line})" if line else ""
        raise RoleCredentialsError(f"not an ini-style file{where}") from None
    sections = parser.sections()
    if len(sections) == 1:
        section = parser[sections[0]]
    elif "default" in sections:
        section = parser["default"]
    else:
        raise RoleCredentialsError(
            "it must hold the keys at its top, in one section, or in a [default] section"
        )
    key_id = section.get("aws_access_key_id", "").strip()
    secret = section.get("aws_secret_access_key", "").strip()
    token = section.get("aws_session_token", "").strip()
    missing = [
        name
        for name, value in (("aws_access_key_id", key_id), ("aws_secret_access_key", secret))
        if not value
    ]
    if missing:
        raise RoleCredentialsError(f"{' and '.join(missing)} missing")
    return AwsCredentials(key_id, secret, token or None)


class RoleCredentials:
    """The mapping ExecutionRoleArn → credentials source, as loaded from the file."""

    def __init__(self, sources: Mapping[str, CredentialSource], path: Path | None = None) -> None:
        self._sources = dict(sources)
        self.path = path

    @property
    def roles(self) -> list[str]:
        return sorted(self._sources)

    def knows(self, role_arn: str | None) -> bool:
        return role_arn is not None and role_arn in self._sources

    def resolve(self, role_arn: str | None) -> AwsCredentials | None:
        """The role's credentials now, None for a role that is not listed (or no role)."""
        if role_arn is None or role_arn not in self._sources:
            return None
        return self._sources[role_arn].resolve()


def _source(path: Path, role_arn: str, table: Any) -> CredentialSource:
    where = f'{path}: [roles."{role_arn}"]'
    if not ROLE_ARN.match(role_arn):
        raise RoleCredentialsError(f"{where}: not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
    if not isinstance(table, dict):
        raise RoleCredentialsError(f"{where} must be a table")
    unknown = sorted(set(table) - set(_KEYS))
    if unknown:
        raise RoleCredentialsError(
            f"{where}: unknown key(s) {', '.join(unknown)}; use profile or credentials_file"
        )
    given = [key for key in _KEYS if key in table]
    if len(given) != 1:
        raise RoleCredentialsError(f"{where} needs exactly one of profile or credentials_file")
    value = table[given[0]]
    if not isinstance(value, str) or not value.strip():
        raise RoleCredentialsError(f"{where}: {given[0]} must be a non-empty string")
    if given[0] == "profile":
        return CredentialSource(role_arn, profile=value)
    file = Path(value).expanduser()
    return CredentialSource(
        role_arn, credentials_file=file if file.is_absolute() else path.parent / file
    )


def load_role_credentials(path: Path | None) -> RoleCredentials:
    """Read the role-credentials file and resolve every role once (None: no roles).

    Raises RoleCredentialsError, naming the file and the role, for anything unusable; the
    server calls it at start so a bad file stops it before any container runs.
    """
    if path is None:
        return RoleCredentials({})
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise RoleCredentialsError(f"cannot read role credentials {path}: {error}") from None
    unknown = sorted(set(data) - {"roles"})
    if unknown:
        raise RoleCredentialsError(
            f'{path}: unknown key(s) {", ".join(unknown)}; use [roles."ARN"]'
        )
    roles = data.get("roles", {})
    if not isinstance(roles, dict):
        raise RoleCredentialsError(f'{path}: roles must be tables [roles."ARN"]')
    sources = {arn: _source(Path(path), arn, table) for arn, table in roles.items()}
    for source in sources.values():
        try:
            source.resolve()
        except RoleCredentialsError as error:
            raise RoleCredentialsError(f"{path}: {error}") from None
    return RoleCredentials(sources, Path(path))
