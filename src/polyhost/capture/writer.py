"""The thread that writes captured invocations to S3, in batches, off the invocation path.

It wakes every `--data-capture-flush-s` seconds (sooner when the buffer is a quarter full),
takes everything queued, and writes one object per endpoint variant and hour
(`record.object_key`) with boto3's S3 client under the standard settings
(`AWS_ENDPOINT_URL_S3`, ...), as the variant's model role where the server maps it
(`asyncinf.credentials.AwsClients`, the clients asynchronous answers are written with). On
stop it writes what is left once more.

A batch S3 does not take is counted as failed and not retried: a capture must never hold
memory for a destination that cannot take it. Failures are logged once per burst per bucket
(when writing to it starts failing, and when it works again), naming the bucket and S3's
error code, never a body or a credential.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any

from polyhost.asyncinf.credentials import AwsClients, CredentialsUnavailable
from polyhost.capture.buffer import CaptureBuffer
from polyhost.capture.config import CaptureTarget
from polyhost.capture.counters import CaptureCounters
from polyhost.capture.record import Captured, RecordFormat, hour_folder, object_key

log = logging.getLogger("polyhost.capture")

# A batch key: where its records go, and their hour.
BatchKey = tuple[CaptureTarget, str, str]
# Records formatted between two releases of the GIL. Formatting is pure Python: a thread that
# held the GIL through a whole batch would keep the event loop waiting up to the interpreter's
# switch interval (5 ms) each time it made a system call, which costs far more than the
# formatting itself. 64 records of 1 KB are about half a millisecond.
CHUNK = 64


class CaptureWriter:
    def __init__(
        self,
        buffer: CaptureBuffer,
        counters: CaptureCounters,
        clients: AwsClients,
        flush_s: float,
    ) -> None:
        self._buffer = buffer
        self._counters = counters
        self._clients = clients
        self._flush_s = flush_s
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._failing: dict[str, int] = {}  # bucket -> records failed in the current burst
        self._format = RecordFormat()
        self._warm: set[str | None] = set()  # roles whose S3 client is not made yet

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="data-capture", daemon=True)
        self._thread.start()

    def warm(self, target: CaptureTarget) -> None:
        """Make the S3 clients `target` writes with now, in the writer's thread (importing
        boto3 and building a client is about half a second of CPU): not during the first
        flush, while invocations are being served."""
        self._warm.update(set(target.roles.values()) or {None})
        self._buffer.wake.set()

    def stop(self, timeout_s: float) -> None:
        """Write what is queued, then end; waits at most `timeout_s` (an unreachable S3 must
        not hold the server's exit)."""
        self._stopping = True
        self._buffer.wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("data capture: the last records were still being written at exit")

    def _run(self) -> None:
        flush_at = time.monotonic() + self._flush_s
        while True:
            self._buffer.wake.wait(max(0.0, flush_at - time.monotonic()))
            self._buffer.wake.clear()
            stopping = self._stopping
            try:
                self._make_clients()
                # Woken to make a client only: the records wait for their interval.
                if stopping or time.monotonic() >= flush_at or self._buffer.filling():
                    flush_at = time.monotonic() + self._flush_s
                    self.flush()
            except Exception:  # a bug must not end capture for the server's lifetime
                log.exception("data capture: writing a batch failed")
            if stopping:
                return

    def _make_clients(self) -> None:
        while self._warm:
            role = self._warm.pop()
            with contextlib.suppress(CredentialsUnavailable):  # said when a batch fails
                self._clients.client("s3", role)

    def flush(self) -> None:
        """Write everything queued now (the writer's thread, or a test's)."""
        batches: dict[BatchKey, list[Captured]] = {}
        for item in self._buffer.take():
            key = (item.target, item.variant, hour_folder(item.at))
            batches.setdefault(key, []).append(item)
        for (target, variant, _), items in batches.items():
            self._write(target, variant, items)

    def _write(self, target: CaptureTarget, variant: str, items: list[Captured]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        body = b"".join(self._lines(target, items))
        key = object_key(target.prefix, target.endpoint, variant, items[0].at)
        counts = self._counters.of(target.endpoint, variant)
        try:
            client: Any = self._clients.client("s3", target.role(variant))
            client.put_object(
                Bucket=target.bucket, Key=key, Body=body, ContentType="application/jsonl"
            )
        except (BotoCoreError, ClientError, CredentialsUnavailable) as error:
            counts.failed += len(items)
            self._failed(target, error, len(items))
            return
        counts.written += len(items)
        failed = self._failing.pop(target.bucket, None)
        if failed is not None:
            log.info(
                "data capture: writing to s3://%s works again (%d records failed before)",
                target.bucket,
                failed,
            )

    def _lines(self, target: CaptureTarget, items: list[Captured]) -> list[bytes]:
        csv, js, line = target.csv_types, target.json_types, self._format.line
        lines = []
        for start in range(0, len(items), CHUNK):
            lines += [line(item, csv, js) for item in items[start : start + CHUNK]]
            time.sleep(0)  # let the event loop have the GIL (see CHUNK)
        return lines

    def _failed(self, target: CaptureTarget, error: Exception, count: int) -> None:
        bucket = target.bucket
        if bucket in self._failing:
            self._failing[bucket] += count
            return
        self._failing[bucket] = count
        log.warning(
            "data capture: writing records of endpoint %s to s3://%s failed (%s); they are "
            "counted as failed (polyhost_data_capture_failed), and this is logged again once "
            "writing works",
            target.endpoint,
            bucket,
            _reason(error),
        )


def _reason(error: Exception) -> str:
    """S3's error code and message, or the error's class: what went wrong, never a secret."""
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        details = response.get("Error", {})
        return f"{details.get('Code', 'Error')}: {details.get('Message', '')}".rstrip(": ")
    if isinstance(error, CredentialsUnavailable):
        return str(error)
    return type(error).__name__
