"""Where an asynchronous request's input comes from and its answer goes: blocking calls, made
from worker threads.

The input is fetched by `modeldata`'s sources, so an InputLocation obeys what a ModelDataUrl
does: s3:// through boto3's standard settings (`AWS_ENDPOINT_URL_S3`), https:// only to the
hosts `--allow-model-host` allows, within a size bound and a deadline. Answers are written with
boto3's S3 client, under the same settings. Every S3 call acts as the request's model role
where the server maps it, else as the server (`credentials.py`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from polyhost.asyncinf.credentials import AwsClients, CredentialsUnavailable
from polyhost.backends.role_credentials import RoleCredentials
from polyhost.modeldata.errors import ArtifactError
from polyhost.modeldata.fetch_control import FetchLimits
from polyhost.modeldata.hosts import HostPolicy
from polyhost.modeldata.sources import S3Source
from polyhost.modeldata.store import source_for


class OutputFailed(Exception):
    """An answer or failure could not be written; the message says why (no credentials)."""


def fetch_input(
    url: str,
    work: Path,
    max_bytes: int,
    timeout_s: float,
    policy: HostPolicy,
    s3_client: Any = None,
) -> bytes:
    """The bytes at `url` (s3:// or https://); raises ArtifactError naming the cause.
    `s3_client` reads an s3:// URL (the request's identity); boto3's default without it."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("s3", "https"):
        raise ArtifactError("InputLocation must be an s3:// or https:// URL.")
    if url.endswith("/"):
        raise ArtifactError("InputLocation must name an object, not a prefix.")
    work.mkdir(parents=True, exist_ok=True)
    limits = FetchLimits(
        deadline=time.monotonic() + timeout_s, timeout_s=timeout_s, max_bytes=max_bytes, max_files=1
    )
    source = S3Source(url, s3_client) if scheme == "s3" else source_for(url, policy)
    fetched = source.fetch(None, work, limits)
    if fetched is None or fetched.kind != "archive":  # pragma: no cover - no validator passed
        raise ArtifactError("InputLocation did not name one object.")
    try:
        return fetched.path.read_bytes()
    finally:
        fetched.path.unlink(missing_ok=True)


def _split(location: str) -> tuple[str, str]:
    parts = urlsplit(location)
    return parts.netloc, parts.path.lstrip("/")


class OutputStore:
    """Writes answers to S3 and tells whether one is already there, as `role` (the request's
    model role; None or unmapped: the server's credentials)."""

    def __init__(self, timeout_s: float, clients: AwsClients | None = None) -> None:
        self.clients = clients or AwsClients(RoleCredentials({}), timeout_s)

    def _s3(self, location: str, role: str | None) -> Any:
        try:
            return self.clients.client("s3", role)
        except CredentialsUnavailable as error:
            raise OutputFailed(f"reaching {location} failed: {error}") from None

    def put(self, location: str, body: bytes, content_type: str, role: str | None = None) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = _split(location)
        try:
            self._s3(location, role).put_object(
                Bucket=bucket, Key=key, Body=body, ContentType=content_type
            )
        except (BotoCoreError, ClientError) as error:
            raise OutputFailed(f"writing {location} failed: {_reason(error)}") from None

    def exists(self, location: str, role: str | None = None) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = _split(location)
        try:
            self._s3(location, role).head_object(Bucket=bucket, Key=key)
        except ClientError:
            return False
        except BotoCoreError as error:
            raise OutputFailed(f"looking for {location} failed: {_reason(error)}") from None
        return True

    def read_input(
        self,
        url: str,
        work: Path,
        max_bytes: int,
        timeout_s: float,
        policy: HostPolicy,
        role: str | None = None,
    ) -> bytes:
        """`fetch_input` as `role`; a mapped role whose credentials fail is an ArtifactError."""
        client = None
        if urlsplit(url).scheme.lower() == "s3":
            try:
                client = self.clients.client("s3", role)
            except CredentialsUnavailable as error:
                raise ArtifactError(str(error)) from None
        return fetch_input(url, work, max_bytes, timeout_s, policy, client)


def _reason(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        details = response.get("Error", {})
        return f"{details.get('Code', 'Error')}: {details.get('Message', '')}".rstrip(": ")
    return str(error) or type(error).__name__
