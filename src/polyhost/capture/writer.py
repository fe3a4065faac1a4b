"""The thread that hands captured invocations to the writer process, in batches.

It wakes every `--data-capture-flush-s` seconds (sooner when the buffer is a quarter full),
takes everything queued, and sends it to the writer process (`process.py`) in chunks; the
process formats the records as they come, then writes one object per endpoint variant and hour
(`record.object_key`) with boto3's S3 client under the standard settings
(`AWS_ENDPOINT_URL_S3`, ...), as the variant's model role where `--role-credentials` maps it
(`asyncinf.credentials.AwsClients`, the clients asynchronous answers are written with), and
says what S3 took. On stop it sends what is left once more and waits for the process to write
it and exit.

Handing rows on every few milliseconds instead (so their bodies are freed while still in the
CPU's caches) was measured too: it cost the server more CPU per captured invocation than
batches do (more wake-ups of this thread and of the process, each taking the GIL from the
event loop), so batches it is.

Why a process: formatting a record and botocore's calls are pure Python. In the server's
process they held the GIL the event loop needs, and cost it about as much CPU as serving a
light invocation. This thread only `marshal`s each chunk of rows (C, a copy of the bodies)
and writes it to a socket with the GIL released; the rest happens on another interpreter.

The process is started with the first endpoint that captures, not with the server (a server
that captures nothing never pays for it), and started again, at most once per
`RESTART_INTERVAL_S`, when it has died; the rows of a batch it did not answer for are counted
as failed. It gets no secret: it reads the role credentials itself, from the same file.

A batch S3 does not take is counted as failed and not retried: a capture must never hold
memory for a destination that cannot take it. Failures are logged once per burst per bucket
(when writing to it starts failing, and when it works again), naming the bucket and S3's
error code, never a body or a credential.
"""

from __future__ import annotations

import collections
import logging
import marshal
import operator
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from polyhost.capture.buffer import CaptureBuffer
from polyhost.capture.config import CaptureTarget
from polyhost.capture.counters import CaptureCounters
from polyhost.capture.process import Outcome

log = logging.getLogger("polyhost.capture")

# Rows per message: about half a megabyte of 1 KB invocations, `marshal`led in well under a
# millisecond, so the event loop never waits long for this thread to give the GIL back.
CHUNK = 256
# The socket pair's buffers (the kernel caps them at net.core.wmem_max / rmem_max).
SOCKET_BUFFER = 4 * 1024 * 1024
# The longest a batch may take to be written (several S3 calls, each up to 30 s with their
# retries) before the process is taken for hung, ended and started again.
BATCH_TIMEOUT_S = 300.0
# The least time between two starts of the process, so one that dies at once is not started
# in a loop.
RESTART_INTERVAL_S = 5.0


# A row's (target serial, variant): what its counts are kept by.
_ROW_KEY = operator.itemgetter(0, 1)


class WriterGone(Exception):
    """The writer process is not there, or stopped answering."""


class CaptureWriter:
    def __init__(
        self,
        buffer: CaptureBuffer,
        counters: CaptureCounters,
        flush_s: float,
        role_credentials: Path | None = None,
    ) -> None:
        self._buffer = buffer
        self._counters = counters
        self._flush_s = flush_s
        self._role_credentials = role_credentials
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._failing: dict[str, int] = {}  # bucket -> records failed in the current burst
        self._warm: set[str | None] = set()  # roles whose S3 client is not made yet
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None
        self._started_at = -RESTART_INTERVAL_S
        self._roles: set[str | None] = set()  # every role warmed: made again by a new process
        # Handed to the process but not yet written (the batch under way): how many rows and
        # bytes, per (target serial, variant), and their targets: failed if the process dies.
        self._pending_rows = 0
        self._pending_bytes = 0
        self._pending: collections.Counter[tuple[int, str]] = collections.Counter()
        self._pending_targets: dict[int, CaptureTarget] = {}
        self.starts = 0  # how many times the process was started

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="data-capture", daemon=True)
        self._thread.start()

    @property
    def pid(self) -> int | None:
        """The writer process's id while it runs."""
        process = self._process
        return None if process is None or process.poll() is not None else process.pid

    def warm(self, target: CaptureTarget) -> None:
        """Start the process and make the S3 clients `target` writes with now (importing
        boto3 and building a client is about half a second of CPU): not during the first
        flush, while invocations are being served."""
        self._warm.update(set(target.roles.values()) or {None})
        self._buffer.wake.set()

    def stop(self, timeout_s: float) -> None:
        """Write what is queued, then end; waits at most `timeout_s` (an unreachable S3 must
        not hold the server's exit), then ends the process."""
        self._stopping = True
        self._buffer.wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("data capture: the last records were still being written at exit")
        self._end_process()

    def _run(self) -> None:
        flush_at = time.monotonic() + self._flush_s
        buffer = self._buffer
        while True:
            buffer.wake.wait(max(0.0, flush_at - time.monotonic()))
            buffer.wake.clear()
            stopping = self._stopping
            try:
                self._revive()
                self._send_warm()
                # Woken to make a client only: the records wait for their interval.
                if stopping or time.monotonic() >= flush_at or buffer.filling():
                    flush_at = time.monotonic() + self._flush_s
                    self.flush(last=stopping)
            except Exception:  # a bug must not end capture for the server's lifetime
                log.exception("data capture: writing a batch failed")
            if stopping:
                return

    # -- the process ------------------------------------------------------------------------
    def _ensure(self) -> Connection:
        """The process's connection, starting it when it is not running."""
        if self._connection is not None and self._process is not None:
            if self._process.poll() is None:
                return self._connection
            self._lost(f"it exited with code {self._process.returncode}")
        wait = self._started_at + RESTART_INTERVAL_S - time.monotonic()
        if wait > 0:
            if self._stopping:
                raise WriterGone("it was started again too recently")
            time.sleep(wait)
        self._started_at = time.monotonic()
        ours, theirs = socket.socketpair()
        for end in (ours, theirs):  # a chunk or more in flight: fewer wake-ups per batch
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        command = [sys.executable, "-m", "polyhost.capture.process", str(theirs.fileno())]
        if self._role_credentials is not None:
            command.append(str(self._role_credentials))
        try:
            self._process = subprocess.Popen(
                command, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL
            )
        except OSError as error:
            ours.close()
            raise WriterGone(f"it could not be started: {error}") from None
        finally:
            theirs.close()
        self.starts += 1
        self._connection = Connection(ours.detach())
        if self.starts > 1:
            log.warning("data capture: the writer process was started again")
            # A new process has no client yet: every role known so far is made again.
            self._send(self._connection, ("W", sorted(self._roles, key=str)))
        return self._connection

    def _revive(self) -> None:
        """A process that died between batches is reaped and started again now, with its
        clients made, rather than during the next batch."""
        process = self._process
        if process is not None and self._connection is not None and process.poll() is not None:
            if self._stopping:
                self._lost(f"it exited with code {process.returncode}")
                return
            try:
                self._ensure()
            except WriterGone as error:
                self._lost(str(error))

    def _lost(self, why: str) -> None:
        """The process is gone: what it held is counted as failed."""
        log.warning("data capture: the writer process is gone (%s)", why)
        self._end_process()
        self._fail_pending()

    def _end_process(self) -> None:
        """Close the connection and make sure the process is gone."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()  # the process writes what it holds and exits
        process = self._process
        if process is not None and process.poll() is None:
            try:
                process.wait(5.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _send(self, connection: Connection, message: tuple[Any, ...]) -> None:
        try:
            connection.send_bytes(marshal.dumps(message))
        except OSError as error:
            raise WriterGone(type(error).__name__) from None

    def _send_warm(self) -> None:
        if not self._warm:
            return
        roles = list(self._warm)
        self._warm.clear()
        self._roles.update(roles)
        try:
            self._send(self._ensure(), ("W", roles))
        except WriterGone as error:
            self._lost(str(error))

    # -- batches ------------------------------------------------------------------------------
    def _stream(self) -> None:
        """Hand what is queued to the process, which formats it as it comes."""
        rows, targets, size = self._buffer.take()
        if not rows:
            return
        # Counted first: if the process is lost from here on, these rows count as failed.
        self._pending.update(map(_ROW_KEY, rows))
        self._pending_targets.update(targets)
        self._pending_rows += len(rows)
        self._pending_bytes += size
        try:
            connection = self._ensure()
            self._send(connection, ("B", [target.wire() for target in targets.values()]))
            for start in range(0, len(rows), CHUNK):
                self._send(connection, ("R", rows[start : start + CHUNK]))
        except WriterGone as error:
            self._lost(str(error))

    def flush(self, last: bool = False) -> None:
        """Write everything queued now (`last`: and let the process end once it is written)."""
        self._stream()
        connection = self._connection
        if connection is None or not (self._pending_rows or last):
            return
        try:
            self._send(connection, ("S",) if last else ("F",))
            outcomes = self._answer(connection)
        except WriterGone as error:
            self._lost(str(error))
            return
        self._clear_pending()
        self._account(outcomes)
        if last:
            self._end_process()

    def _clear_pending(self) -> None:
        self._pending_rows = self._pending_bytes = 0
        self._pending = collections.Counter()
        self._pending_targets = {}

    def _answer(self, connection: Connection) -> list[Outcome]:
        deadline = time.monotonic() + BATCH_TIMEOUT_S
        try:
            while not connection.poll(1.0):
                process = self._process
                if process is None or process.poll() is not None:
                    raise WriterGone("it exited while writing a batch")
                if time.monotonic() > deadline:
                    raise WriterGone(f"no answer in {BATCH_TIMEOUT_S:g} s")
            kind, outcomes = marshal.loads(connection.recv_bytes())
        except (EOFError, OSError, ValueError) as error:
            raise WriterGone(type(error).__name__) from None
        assert kind == "D"
        return list(outcomes)

    def _fail_pending(self) -> None:
        """The batch under way, which the process did not answer for: every row of it
        counted as failed."""
        pending, targets = self._pending, self._pending_targets
        self._clear_pending()
        for (serial, variant), count in pending.items():
            target = targets[serial]
            self._counters.of(target.endpoint, variant).failed += count
            self._failed(target.endpoint, target.bucket, "the writer process is gone", count)

    def _account(self, outcomes: list[Outcome]) -> None:
        for endpoint, variant, bucket, count, reason in outcomes:
            counts = self._counters.of(endpoint, variant)
            if reason is not None:
                counts.failed += count
                self._failed(endpoint, bucket, reason, count)
                continue
            counts.written += count
            failed = self._failing.pop(bucket, None)
            if failed is not None:
                log.info(
                    "data capture: writing to s3://%s works again (%d records failed before)",
                    bucket,
                    failed,
                )

    def _failed(self, endpoint: str, bucket: str, reason: str, count: int) -> None:
        if bucket in self._failing:
            self._failing[bucket] += count
            return
        self._failing[bucket] = count
        log.warning(
            "data capture: writing records of endpoint %s to s3://%s failed (%s); they are "
            "counted as failed (polyhost_data_capture_failed), and this is logged again once "
            "writing works",
            endpoint,
            bucket,
            reason,
        )
