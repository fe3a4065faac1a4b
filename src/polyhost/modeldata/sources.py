"""Where model data comes from: `file://`, `s3://` and `https://` URLs.

Each source answers one question for the cache: given what it saw last time (a *validator*:
ETag, size, modification time), is the data unchanged — and if not, here is the new content,
already hashed. Hashing while downloading lets the cache key extracted models by content, so
the same archive under two URLs is extracted once.

This module holds the common part and the `file://` and `s3://` sources; `https://` is in
`https_source` (with the host policy of `hosts` and the pinned connection of
`pinned_https`). Every loop here checks the fetch's deadline and cancellation (`FetchLimits`).

A `file://` path must be a regular file or a folder: a FIFO, a device or a socket is refused
before a byte is read (`local_files`). Where it may lie is the local policy's to say
(`local_policy`: allowed folders, forbidden paths), checked again here at every fetch, since
the path or its symlinks may have changed since CreateModel. A folder is copied into the cache
(`local_tree`), never handed to a container as it is.

S3 goes through boto3's default session, so the standard AWS settings apply unchanged:
credentials from the environment, profile or instance role, region, and the endpoint overrides
`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` that point it at any S3-compatible server.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol
from urllib.parse import unquote, urlsplit

from polyhost.modeldata.errors import ArtifactError, ArtifactMissing, quote_member, redact_url
from polyhost.modeldata.fetch_control import FetchLimits
from polyhost.modeldata.local_files import not_a_file, open_regular
from polyhost.modeldata.local_policy import LocalModelPolicy
from polyhost.modeldata.local_tree import copy_folder, folder_validator

log = logging.getLogger("polyhost.modeldata.store")

CHUNK = 1024 * 1024
_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
S3_CHUNK = 64 * 1024  # botocore reads until the chunk is full: keep checks between reads close
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".gz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
Validator = dict[str, str]


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class Fetched:
    """New content from a source.

    kind "archive": `path` is a tar file; "tree": `path` is a folder of files (an s3 prefix, or
    the copy of a local folder), adopted by the cache as it is.
    """

    kind: Literal["archive", "tree"]
    path: Path
    sha256: str
    validator: Validator | None  # None: the source cannot tell next time whether it changed
    temporary: bool  # the cache deletes `path` once it is done with it
    # Called with the descriptor of the archive when it is opened again to be extracted: a
    # local file is checked once more against the policy there (it may have been re-linked).
    reopened: Callable[[int], None] | None = None


class Source:
    """One model URL; `fetch` returns None when the data is unchanged since `previous`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.label = redact_url(url)

    def fetch(self, previous: Validator | None, work: Path, limits: FetchLimits) -> Fetched | None:
        raise NotImplementedError

    def _failed(self, why: str) -> ArtifactError:
        return ArtifactError(f"Failed to download model data from {self.label}: {why}")

    def _too_big(self, size: int, limits: FetchLimits) -> ArtifactError:
        return ArtifactError(
            f"Model data {self.label} is {size} bytes, more than the limit of "
            f"{limits.max_bytes} bytes."
        )

    def _copy(self, chunks: Iterator[bytes], out: Sink, limits: FetchLimits) -> str:
        """Write chunks to `out`, enforcing the size cap and the deadline; returns the sha256."""
        digest = hashlib.sha256()
        size = 0
        limits.check(self.label)
        for chunk in chunks:
            size += len(chunk)
            if size > limits.max_bytes:
                raise self._too_big(size, limits)
            limits.check(self.label)
            digest.update(chunk)
            out.write(chunk)
        return digest.hexdigest()


def read_chunks(read: Callable[[int], bytes], size: int = CHUNK) -> Iterator[bytes]:
    while chunk := read(size):
        yield chunk


def tree_digest(files: dict[str, str]) -> str:
    """Content hash of a folder: its relative paths and each file's sha256, in order."""
    digest = hashlib.sha256(b"tree\n")
    for rel in sorted(files):
        digest.update(f"{rel}\0{files[rel]}\n".encode())
    return digest.hexdigest()


class FileSource(Source):
    """`file:///path/model.tar.gz` (extracted) or `file:///path/folder` (copied), where the
    local policy allows."""

    def __init__(self, url: str, policy: LocalModelPolicy | None = None) -> None:
        super().__init__(url)
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ArtifactError(
                f"Model data URL {self.label} names host {parts.netloc!r}; a file:// URL must "
                "be local, like file:///srv/models/model.tar.gz."
            )
        self.path = Path(unquote(parts.path))
        self.policy = policy or LocalModelPolicy()

    def fetch(self, previous: Validator | None, work: Path, limits: FetchLimits) -> Fetched | None:
        resolved = self.policy.check(self.path, self.label)
        try:
            info = resolved.stat()
        except OSError as error:
            kind = ArtifactMissing if error.errno == errno.ENOENT else ArtifactError
            raise kind(f"Failed to read model data from {self.label}: {error.strerror}") from None
        if stat.S_ISDIR(info.st_mode):
            if self.path.name.lower().endswith(ARCHIVE_SUFFIXES):
                raise ArtifactError(
                    f"Model data {self.label} was refused: it is a folder, but its name says it "
                    "is an archive; name the .tar.gz file itself, or a folder to copy as the "
                    "model."
                )
            return self._fetch_folder(resolved, previous, work, limits)
        if not stat.S_ISREG(info.st_mode):
            raise not_a_file(self.label, info.st_mode)
        validator = {
            "size": str(info.st_size),
            "mtime_ns": str(info.st_mtime_ns),
            "inode": f"{info.st_dev}:{info.st_ino}",
        }
        if previous == validator:
            return None
        if info.st_size > limits.max_bytes:
            raise self._too_big(info.st_size, limits)
        log.info("reading model data %s", self.label)
        # Hash what is really there: opened without blocking and checked to be a regular file
        # (the name could have been swapped for a FIFO or a device since the stat above), and
        # where the policy allows (or for a symbolic link leading elsewhere).
        with open_regular(resolved, self.label) as handle:
            self._reopened(handle.fileno(), resolved)
            try:
                sha = self._copy(read_chunks(handle.read), _Discard(), limits)
            except OSError as error:
                raise ArtifactError(
                    f"Failed to read model data from {self.label}: {error.strerror}"
                ) from None
        return Fetched(
            "archive",
            resolved,
            sha,
            validator,
            temporary=False,
            reopened=lambda fd: self._reopened(fd, resolved),
        )

    def _reopened(self, fd: int, resolved: Path) -> None:
        self.policy.check_opened(fd, resolved, self.label)

    def _fetch_folder(
        self, resolved: Path, previous: Validator | None, work: Path, limits: FetchLimits
    ) -> Fetched | None:
        """A copy of the folder in `work` (or None when it is unchanged since `previous`)."""
        try:
            root_fd = os.open(resolved, _FOLDER_FLAGS)
        except OSError as error:
            self.policy.check(self.path, self.label)  # re-linked since: say so, if refused now
            raise ArtifactError(
                f"Failed to read model data from {self.label}: {error.strerror}"
            ) from None
        try:
            self._reopened(root_fd, resolved)
            forbidden = self.policy.forbidden_inodes()
            validator = folder_validator(root_fd, self.label, limits, forbidden)
            if previous == validator:
                return None
            log.info("copying model data %s (%s entries)", self.label, validator["entries"])
            staging = Path(tempfile.mkdtemp(dir=work, suffix=".tree"))
            try:
                sha, validator = copy_folder(
                    root_fd, resolved, staging, self.label, limits, forbidden
                )
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        finally:
            os.close(root_fd)
        return Fetched("tree", staging, sha, validator, temporary=True)


class _Discard:
    """A sink for `_copy` when only the hash is wanted."""

    def write(self, data: bytes) -> int:
        return len(data)


# Read timeouts an S3 client is made with: the largest not past the fetch's remaining time is
# used, so a call never outlives the deadline, and at most this many clients are ever made.
_S3_TIMEOUTS_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_s3_clients: dict[float, Any] = {}
_s3_clients_lock = threading.Lock()


def _s3_client(limits: FetchLimits) -> Any:
    """A client of boto3's default session, kept per read timeout: making one costs about
    130 ms (the session loads botocore's models), which every multi-model cold load paid.
    boto3's clients are safe to share between threads; only making them is not."""
    remaining = limits.remaining()
    timeout = max([t for t in _S3_TIMEOUTS_S if t <= remaining] or [_S3_TIMEOUTS_S[0]])
    with _s3_clients_lock:
        client = _s3_clients.get(timeout)
        if client is None:
            import boto3
            from botocore.config import Config

            client = _s3_clients[timeout] = boto3.session.Session().client(
                "s3",
                config=Config(
                    connect_timeout=min(timeout, 10.0),
                    read_timeout=timeout,
                    retries={"max_attempts": 3, "mode": "standard"},
                    max_pool_connections=32,
                ),
            )
    return client


def _s3_reason(error: Exception) -> str:
    """botocore's error as `Code: message` (its messages carry no credentials)."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        details = response.get("Error", {})
        code = str(details.get("Code", "")) or "Error"
        message = str(details.get("Message", "")) or type(error).__name__
        if code == "404":
            code, message = "NotFound", "no such bucket or key"
        elif code == "403":
            code, message = "AccessDenied", "access denied"
        return f"{code}: {message}"
    return str(error) or type(error).__name__


class S3Source(Source):
    """`s3://bucket/key.tar.gz` (one archive) or `s3://bucket/prefix/` (a folder of files).

    `client`: the boto3 S3 client to read with, for a caller that acts as another identity
    than the server's or reuses its clients (an asynchronous request's input, read as its
    model's role); a new client of boto3's default session otherwise."""

    def __init__(self, url: str, client: Any = None) -> None:
        super().__init__(url)
        self._client = client
        parts = urlsplit(url)
        self.bucket = parts.netloc
        self.key = parts.path.lstrip("/")
        if not self.bucket:
            raise ArtifactError(f"Model data URL {self.label} names no bucket.")

    def fetch(self, previous: Validator | None, work: Path, limits: FetchLimits) -> Fetched | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client = self._client or _s3_client(limits)
            if self.key == "" or self.key.endswith("/"):
                return self._fetch_prefix(client, previous, work, limits)
            return self._fetch_object(client, previous, work, limits)
        except (ClientError, BotoCoreError) as error:
            reason = _s3_reason(error)
            if reason.startswith(("NotFound:", "NoSuchKey:")) and not self.key.endswith("/"):
                raise ArtifactMissing(self._failed(reason).message) from None
            raise self._failed(reason) from None
        except TimeoutError:
            raise self._failed(f"timed out after {limits.timeout_s:g} seconds") from None

    def _fetch_object(
        self, client: Any, previous: Validator | None, work: Path, limits: FetchLimits
    ) -> Fetched | None:
        from botocore.exceptions import ClientError

        if previous:
            try:
                head = client.head_object(Bucket=self.bucket, Key=self.key)
                if _object_validator(head) == previous:
                    return None
            except ClientError:
                pass  # the GET below reports the precise error
        answer = client.get_object(Bucket=self.bucket, Key=self.key)
        body = answer["Body"]
        try:
            size = int(answer.get("ContentLength", 0))
            if size > limits.max_bytes:
                raise self._too_big(size, limits)
            log.info("downloading model data %s", self.label)
            handle, name = tempfile.mkstemp(dir=work, suffix=".download")
            path = Path(name)
            try:
                with os.fdopen(handle, "wb") as out:
                    sha = self._copy(read_chunks(body.read, S3_CHUNK), out, limits)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        finally:
            body.close()
        return Fetched("archive", path, sha, _object_validator(answer), temporary=True)

    def _list(self, client: Any, limits: FetchLimits) -> list[tuple[str, str, int]]:
        objects: list[tuple[str, str, int]] = []
        total = 0
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.key
        ):
            limits.check(self.label)
            for item in page.get("Contents", []):
                key = str(item["Key"])
                if key.endswith("/"):
                    continue  # a "folder" marker object, not a file
                size = int(item.get("Size", 0))
                objects.append((key, str(item.get("ETag", "")), size))
                total += size
                if total > limits.max_bytes:
                    raise self._too_big(total, limits)
                if len(objects) > limits.max_files:
                    raise ArtifactError(
                        f"Model data {self.label} was refused: it has more than "
                        f"{limits.max_files} files."
                    )
        if not objects:
            raise self._failed(f"no objects under prefix s3://{self.bucket}/{self.key}")
        return sorted(objects)

    def _fetch_prefix(
        self, client: Any, previous: Validator | None, work: Path, limits: FetchLimits
    ) -> Fetched | None:
        objects = self._list(client, limits)
        validator = {
            "listing": hashlib.sha256(json.dumps(objects).encode()).hexdigest(),
            "count": str(len(objects)),
        }
        if previous == validator:
            return None
        log.info("downloading model data %s (%d objects)", self.label, len(objects))
        root = Path(tempfile.mkdtemp(dir=work, suffix=".tree"))
        files: dict[str, str] = {}
        try:
            for key, _etag, _size in objects:
                rel = self._relative(key)
                target = root / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                answer = client.get_object(Bucket=self.bucket, Key=key)
                body = answer["Body"]
                try:
                    with open(target, "wb") as out:
                        files[rel] = self._copy(read_chunks(body.read, S3_CHUNK), out, limits)
                finally:
                    body.close()
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return Fetched("tree", root, tree_digest(files), validator, temporary=True)

    def _relative(self, key: str) -> str:
        """The object's path below the prefix, refused when it could escape the folder."""
        rel = key[len(self.key) :]
        parts = PurePosixPath(rel).parts
        if not rel or rel.startswith("/") or ".." in parts or "" in rel.split("/"):
            raise ArtifactError(
                f"Model data {self.label} was refused: object key {quote_member(key)} is not a "
                "plain relative path below the prefix."
            )
        return rel


def _object_validator(answer: dict[str, Any]) -> Validator:
    modified = answer.get("LastModified")
    return {
        "etag": str(answer.get("ETag", "")),
        "size": str(answer.get("ContentLength", "")),
        "last_modified": modified.isoformat() if modified is not None else "",
    }
