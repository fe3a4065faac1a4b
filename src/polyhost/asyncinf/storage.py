"""Where an asynchronous request's input comes from and its answer goes: blocking calls, made
from worker threads.

The input is fetched by `modeldata`'s sources, so an InputLocation obeys what a ModelDataUrl
does: s3:// through boto3's standard settings (`AWS_ENDPOINT_URL_S3`, the server's
credentials), https:// only to the hosts `--allow-model-host` allows, within a size bound and a
deadline. Answers are written with boto3's S3 client, under the same settings.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from polyhost.modeldata.errors import ArtifactError
from polyhost.modeldata.fetch_control import FetchLimits
from polyhost.modeldata.hosts import HostPolicy
from polyhost.modeldata.store import source_for


class OutputFailed(Exception):
    """An answer or failure could not be written; the message says why (no credentials)."""


def fetch_input(
    url: str, work: Path, max_bytes: int, timeout_s: float, policy: HostPolicy
) -> bytes:
    """The bytes at `url` (s3:// or https://); raises ArtifactError naming the cause."""
    if urlsplit(url).scheme.lower() not in ("s3", "https"):
        raise ArtifactError("InputLocation must be an s3:// or https:// URL.")
    if url.endswith("/"):
        raise ArtifactError("InputLocation must name an object, not a prefix.")
    work.mkdir(parents=True, exist_ok=True)
    limits = FetchLimits(
        deadline=time.monotonic() + timeout_s, timeout_s=timeout_s, max_bytes=max_bytes, max_files=1
    )
    fetched = source_for(url, policy).fetch(None, work, limits)
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
    """Writes answers to S3 and tells whether one is already there."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = timeout_s
        self._client: Any = None

    def _s3(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3",
                config=Config(
                    connect_timeout=min(self._timeout, 10.0),
                    read_timeout=self._timeout,
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )
        return self._client

    def put(self, location: str, body: bytes, content_type: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = _split(location)
        try:
            self._s3().put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        except (BotoCoreError, ClientError) as error:
            raise OutputFailed(f"writing {location} failed: {_reason(error)}") from None

    def exists(self, location: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = _split(location)
        try:
            self._s3().head_object(Bucket=bucket, Key=key)
        except ClientError:
            return False
        except BotoCoreError as error:
            raise OutputFailed(f"looking for {location} failed: {_reason(error)}") from None
        return True


def _reason(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        details = response.get("Error", {})
        return f"{details.get('Code', 'Error')}: {details.get('Message', '')}".rstrip(": ")
    return str(error) or type(error).__name__
