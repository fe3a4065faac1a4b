"""The model data cache: fetch a `ModelDataUrl` once, extract it safely, share it read-only.

Layout under the cache folder:

    index/<sha256 of URL>.json   what the URL held last time: validator + content hash
    models/<content sha256>/     an extracted model, read-only, shared by every replica
    locks/<sha256 of URL>.lock   one fetch per URL at a time (threads and processes alike)
    tmp/                         downloads and extractions in progress

A model is keyed by its content, not its URL: the same archive under two URLs is extracted once,
and a URL whose content changed gets a new folder while running containers keep the old one.
A folder appears under `models/` only by an atomic rename of a finished extraction, so a reader
never sees half a model, and two fetches racing for the same content cannot corrupt it.

`fetch_and_extract` blocks; the deployer runs it in a thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from polyhost.deploy.artifact_errors import ArtifactError, redact_url
from polyhost.deploy.artifact_sources import Fetched, FetchLimits, Validator, source_for
from polyhost.deploy.extract import ExtractLimits, extract_archive, make_read_only, seal_folders

__all__ = ["ArtifactError", "ArtifactStore"]

log = logging.getLogger("polyhost.deploy.artifacts")

STALE_TMP_S = 24 * 3600


def _remove(path: Path) -> None:
    """Delete a file or a folder tree, even one made read-only."""
    if path.is_dir() and not path.is_symlink():

        def writable_then_retry(function: object, name: str, _info: object) -> None:
            with contextlib.suppress(OSError):
                os.chmod(os.path.dirname(name), 0o700)
                os.chmod(name, 0o700)
            with contextlib.suppress(OSError):
                if os.path.isdir(name) and not os.path.islink(name):
                    os.rmdir(name)
                else:
                    os.unlink(name)

        shutil.rmtree(path, onerror=writable_then_retry)
    else:
        path.unlink(missing_ok=True)


class ArtifactStore:
    """Fetches model data by URL into a content-addressed cache of extracted folders."""

    def __init__(
        self, cache_dir: Path, max_extracted_bytes: int, max_members: int = 100_000
    ) -> None:
        self._cache_dir = cache_dir
        self._max_bytes = max_extracted_bytes
        self._max_members = max_members
        for folder in (self._index_dir, self._models_dir, self._locks_dir, self._tmp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._clean_tmp()

    @property
    def _index_dir(self) -> Path:
        return self._cache_dir / "index"

    @property
    def _models_dir(self) -> Path:
        return self._cache_dir / "models"

    @property
    def _locks_dir(self) -> Path:
        return self._cache_dir / "locks"

    @property
    def _tmp_dir(self) -> Path:
        return self._cache_dir / "tmp"

    def _clean_tmp(self) -> None:
        """Leftovers of a process that died mid-fetch; old enough that nobody still uses them."""
        cutoff = time.time() - STALE_TMP_S
        for path in self._tmp_dir.iterdir():
            with contextlib.suppress(OSError):
                if path.lstat().st_mtime < cutoff:
                    _remove(path)

    def fetch_and_extract(self, url: str, timeout_s: float) -> Path:
        """The folder holding the extracted model of `url` (fetched unless cached and unchanged).

        `timeout_s` bounds waiting for a concurrent fetch of the same URL plus the download.
        Raises ArtifactError with a message fit for an endpoint's FailureReason.
        """
        label = redact_url(url)
        source = source_for(url)
        limits = FetchLimits(
            deadline=time.monotonic() + timeout_s,
            timeout_s=timeout_s,
            max_bytes=self._max_bytes,
            max_files=self._max_members,
        )
        url_key = hashlib.sha256(url.encode()).hexdigest()
        with self._locked(url_key, limits, label):
            cached = self._cached(url_key)
            previous = cached[0] if cached is not None else None
            fetched = source.fetch(previous, self._tmp_dir, limits)
            if fetched is None:
                assert cached is not None
                log.info("model data %s unchanged; using the cached copy", label)
                return self._models_dir / cached[1]
            try:
                if fetched.kind == "directory":
                    return fetched.path
                folder = self._install(fetched, label)
                self._write_index(url_key, label, fetched.validator, fetched.sha256)
                return folder
            finally:
                if fetched.temporary:
                    _remove(fetched.path)

    @contextlib.contextmanager
    def _locked(self, url_key: str, limits: FetchLimits, label: str) -> Iterator[None]:
        """An exclusive flock per URL; each call opens its own descriptor, so threads conflict."""
        fd = os.open(self._locks_dir / f"{url_key}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            delay = 0.005
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if limits.remaining() <= 0:
                        raise ArtifactError(
                            f"Failed to download model data from {label}: timed out after "
                            f"{limits.timeout_s:g} seconds waiting for another download of it."
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.1)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _cached(self, url_key: str) -> tuple[Validator, str] | None:
        """(validator, content hash) from the last fetch of this URL, if its folder still exists."""
        try:
            record = json.loads((self._index_dir / f"{url_key}.json").read_text("utf-8"))
            validator = record["validator"]
            content = str(record["content"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not isinstance(validator, dict) or not (self._models_dir / content).is_dir():
            return None
        return {str(k): str(v) for k, v in validator.items()}, content

    def _write_index(
        self, url_key: str, label: str, validator: Validator | None, content: str
    ) -> None:
        path = self._index_dir / f"{url_key}.json"
        if validator is None:  # the source cannot revalidate: fetch again next time
            path.unlink(missing_ok=True)
            return
        # The redacted URL only: the index must not become a store of presigned secrets.
        record = {"url": label, "validator": validator, "content": content}
        handle, name = tempfile.mkstemp(dir=self._index_dir, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(record, out)
        os.replace(name, path)

    def _install(self, fetched: Fetched, label: str) -> Path:
        """Extract (or adopt a downloaded tree) into `models/<sha>` unless it is already there."""
        final = self._models_dir / fetched.sha256
        if final.is_dir():
            log.info("model data %s has the content of an already extracted model", label)
            return final
        if fetched.kind == "tree":
            staging = fetched.path
        else:
            staging = Path(tempfile.mkdtemp(dir=self._tmp_dir, suffix=".extract"))
            try:
                extract_archive(
                    fetched.path,
                    staging,
                    ExtractLimits(max_bytes=self._max_bytes, max_members=self._max_members),
                    label,
                )
            except BaseException:
                _remove(staging)
                raise
        make_read_only(staging)
        try:
            os.rename(staging, final)
        except OSError as error:
            _remove(staging)
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY) or not final.is_dir():
                raise ArtifactError(
                    f"Model data {label} could not be stored: {error.strerror}"
                ) from None
            return final  # another fetch with the same content finished first
        seal_folders(final)
        log.info("model data %s extracted to %s", label, final)
        return final
