"""`https://host/path/model.tar.gz`: revalidated with If-None-Match / If-Modified-Since.

Only public addresses (or those `--allow-model-host` names) are fetched from, through a
connection pinned to the checked address (`pinned_https`). A failure to reach the host —
no such name, connection refused, timed out, reset, a TLS failure — is one generic message in
the FailureReason, whoever asked: the details, which would tell a caller whether a port is open
on some host of the server's network, go to the server's log only.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

from polyhost.modeldata.errors import ArtifactError, ArtifactMissing
from polyhost.modeldata.fetch_control import FetchLimits
from polyhost.modeldata.hosts import HostPolicy, HostRefused
from polyhost.modeldata.pinned_https import (
    READ_IDLE_S,
    Answer,
    RedirectRefused,
    Unreachable,
    open_https,
)
from polyhost.modeldata.sources import CHUNK, Fetched, Source, Validator

log = logging.getLogger("polyhost.modeldata.store")


class HttpsSource(Source):
    def __init__(self, url: str, policy: HostPolicy) -> None:
        super().__init__(url)
        self._policy = policy

    def _unreachable(self, host: str) -> ArtifactError:
        return ArtifactError(
            f"Could not download the model data from {host}: the host did not answer with the "
            f"file {self.label}."
        )

    def fetch(self, previous: Validator | None, work: Path, limits: FetchLimits) -> Fetched | None:
        headers = {"User-Agent": "polyhost"}
        if previous:
            if previous.get("etag"):
                headers["If-None-Match"] = previous["etag"]
            if previous.get("last_modified"):
                headers["If-Modified-Since"] = previous["last_modified"]
        limits.check(self.label)
        with contextlib.ExitStack() as watches, limits.sockets_expire():
            try:
                answer = open_https(
                    self.url, headers, self._policy, ssl.create_default_context(), limits, watches
                )
            except HostRefused as refused:
                raise ArtifactError(f"Model data {self.label} was refused: {refused}.") from None
            except RedirectRefused as refused:
                raise self._failed(str(refused)) from None
            except ValueError as error:  # e.g. a port that is not a number
                raise ArtifactError(f"Model data URL {self.label} is not valid: {error}") from None
            except Unreachable as failure:
                # Not even "timed out": a port that drops packets must read like a closed one.
                if limits.cancel.cancelled:
                    limits.check(self.label)
                log.warning(
                    "model data %s: no answer from %s: %s", self.label, failure.host, failure.detail
                )
                raise self._unreachable(failure.host) from None
            status = answer.response.status
            if status == 304 and previous:
                return None
            if status == 404:
                raise ArtifactMissing(self._failed(f"HTTP 404 {answer.response.reason}").message)
            if status != 200:
                raise self._failed(f"HTTP {status} {answer.response.reason}")
            validator = {
                "etag": answer.response.getheader("ETag") or "",
                "last_modified": answer.response.getheader("Last-Modified") or "",
            }
            length = answer.response.getheader("Content-Length")
            if length and length.isdigit() and int(length) > limits.max_bytes:
                raise self._too_big(int(length), limits)
            log.info("downloading model data %s", self.label)
            return self._download(answer, validator, work, limits)

    def _download(
        self, answer: Answer, validator: Validator, work: Path, limits: FetchLimits
    ) -> Fetched:
        handle, name = tempfile.mkstemp(dir=work, suffix=".download")
        path = Path(name)
        try:
            with os.fdopen(handle, "wb") as out:
                sha = self._copy(self._chunks(answer, limits), out, limits)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        keep = validator if (validator["etag"] or validator["last_modified"]) else None
        return Fetched("archive", path, sha, keep, temporary=True)

    def _chunks(self, answer: Answer, limits: FetchLimits) -> Iterator[bytes]:
        """The body as it arrives (`read1`: whatever one read returns, so a server trickling
        bytes still lets the loop check the deadline between reads)."""
        while True:
            try:
                answer.sock.settimeout(limits.io_timeout(READ_IDLE_S))
                chunk = answer.response.read1(CHUNK)
            except (OSError, http.client.HTTPException) as error:
                limits.check(self.label)
                if isinstance(error, TimeoutError):
                    raise self._failed(
                        f"the host sent nothing for {READ_IDLE_S:g} seconds"
                    ) from None
                log.warning("model data %s: download broke off: %s", self.label, error)
                raise self._unreachable(answer.host) from None
            if not chunk:
                break
            yield chunk
        # A socket woken by cancellation or the deadline reads as a clean end: check first.
        limits.check(self.label)
        if answer.response.length:  # the connection ended before Content-Length bytes came
            log.warning("model data %s: the download ended early", self.label)
            raise self._unreachable(answer.host)
