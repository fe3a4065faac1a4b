"""Copies a container's output from a pipe into its rotating log file, at a bounded rate.

The server owns the writes (rather than handing the child the log file itself) so the file can
be rotated by size (`files.py`) and so a container that prints in a loop cannot fill the disk
or the server's time:

- a token bucket lets through `RATE_BYTES_S` sustained with bursts up to `BURST_BYTES`; what
  exceeds it is dropped and counted, and one `[polyhost: N bytes dropped]` line marks the gap
  once output is let through again (or when the pipe closes);
- while it drops, the reader pauses `THROTTLE_S` between reads, so the pipe fills and the
  flooding container's writes block for a moment: it is slowed down, never stopped, and the
  server spends almost nothing draining it.

One thread per container rather than an asyncio reader on the event loop. Measured with a
container writing to its stdout as fast as it can: unthrottled, either reader costs the server a
whole core (about 400 MB/s through the pipe); throttled as here, both cost next to nothing and
the event loop's scheduling lag stays what it is with no container at all (a few ms at worst on
a shared 2-core machine). The thread wins because file writes and rotations (renames) never run
on the loop that serves invocations, however slow the disk.

A write the disk does not take (a full disk) loses that output, and may cut a line in the middle.
The loss is counted, and once a write succeeds again the cut line is finished and one
`[polyhost: N bytes not written to this log: <reason>]` line marks the gap, so output written
after the disk recovers starts a line of its own rather than being glued to the cut one.

If the server dies (kill -9), the pipe's read end closes with it and the container's next write
fails (SIGPIPE, or EPIPE for programs that ignore it, as Python does). That is accepted: a server
that comes back reaps the containers its predecessor left (`orphans.py`) before anything else.
"""

from __future__ import annotations

import array
import fcntl
import logging
import os
import select
import termios
import threading
import time

from polyhost.logs.files import RotatingLog

log = logging.getLogger("polyhost.logs")

RATE_BYTES_S = 1024 * 1024
BURST_BYTES = 4 * 1024 * 1024
CHUNK_BYTES = 64 * 1024
THROTTLE_S = 0.005
# How often a reader blocked on a silent pipe checks whether it was asked to stop.
WAKE_S = 1.0


def dropped_marker(count: int) -> bytes:
    return f"[polyhost: {count} bytes dropped]\n".encode()


def lost_marker(count: int, reason: str) -> bytes:
    return f"[polyhost: {count} bytes not written to this log: {reason}]\n".encode()


class TokenBucket:
    """`rate` bytes per second sustained, up to `burst` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._last = time.monotonic()

    def take(self, count: int) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < count:
            return False
        self._tokens -= count
        return True


def unread_bytes(fd: int) -> int:
    """Bytes waiting in a pipe (FIONREAD)."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count, True)
    return int(count[0])


class ThrottledLog:
    """A container's log file behind a rate limit: what exceeds it is dropped and counted, and
    one marker line says how much, once output is let through again. Shared by every backend
    that copies a container's output into its log (the process backend's pipe, Docker's
    log stream)."""

    def __init__(self, logfile: RotatingLog, rate_bytes_s: float, burst_bytes: float) -> None:
        self.file = logfile
        self._bucket = TokenBucket(rate_bytes_s, burst_bytes)
        self._pending_drop = 0
        # Bytes lost to failed writes since the last one that succeeded, and why.
        self._pending_lost = 0
        self._lost_reason = ""
        self._write_failed = False
        self.dropped_bytes = 0

    def accept(self, data: bytes) -> bool:
        """Write `data` if the rate allows; False when it was dropped (the reader may pause)."""
        if not self._bucket.take(len(data)):
            self._pending_drop += len(data)
            self.dropped_bytes += len(data)
            return False
        self.flush_marker()
        self.write(data)
        return True

    def flush_marker(self) -> None:
        if self._pending_lost:
            self._mark_lost()
        if self._pending_drop:
            marker = dropped_marker(self._pending_drop)
            self._pending_drop = 0
            self.write_line(marker)

    def write_line(self, line: bytes) -> None:
        """`line` on a line of its own, after what the container left unfinished."""
        self.write(line if self.file.at_line_start else b"\n" + line)

    def write(self, data: bytes) -> None:
        if self._pending_lost and not self._mark_lost():
            self._lose(len(data), None)  # the disk still takes nothing: this is lost too
            return
        before = self.file.bytes_written
        try:
            self.file.write(data)
        except OSError as error:
            self._lose(len(data) - (self.file.bytes_written - before), error)

    def _lose(self, count: int, error: OSError | None) -> None:
        self.dropped_bytes += count
        self._pending_lost += count
        if error is not None:
            self._lost_reason = error.strerror or str(error)
        if not self._write_failed:  # once per failure, not once per chunk
            self._write_failed = True
            log.warning("cannot write log %s: %s", self.file.path, self._lost_reason)

    def _mark_lost(self) -> bool:
        """Finish the line a failed write cut and say what was lost; True once written.

        A marker cut in its turn is finished by the next attempt, which writes it whole."""
        marker = lost_marker(self._pending_lost, self._lost_reason)
        try:
            self.file.write(marker if self.file.at_line_start else b"\n" + marker)
        except OSError:
            return False
        log.info("writing log %s again; %d bytes were lost", self.file.path, self._pending_lost)
        self._pending_lost = 0
        self._write_failed = False
        return True


class LogCopy:
    """What every copier of a container's output into its log file shares, whatever it reads
    (a pipe here, the Docker daemon's logs API in that backend): one daemon thread running
    `_run`, which writes through a `ThrottledLog` into `logfile` and sets `_done` once the
    file is closed, so the bounds, the drop count and `done` mean the same for every backend.
    """

    def __init__(
        self, logfile: RotatingLog, thread_name: str, rate_bytes_s: float, burst_bytes: float
    ) -> None:
        self._log = logfile
        self._sink = ThrottledLog(logfile, rate_bytes_s, burst_bytes)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    @property
    def dropped_bytes(self) -> int:
        return self._sink.dropped_bytes

    def start(self) -> None:
        self._thread.start()

    @property
    def done(self) -> bool:
        """True once the source ended (or `stop` was called) and the file is closed."""
        return self._done.is_set()

    def _run(self) -> None:
        raise NotImplementedError


class LogPump(LogCopy):
    """Reads `read_fd` until every writer has closed it, writing into `logfile`.

    Takes ownership of `read_fd` and `logfile`; both are closed when the pump ends.
    """

    def __init__(
        self,
        read_fd: int,
        logfile: RotatingLog,
        name: str,
        rate_bytes_s: float = RATE_BYTES_S,
        burst_bytes: float = BURST_BYTES,
    ) -> None:
        super().__init__(logfile, f"log:{name}", rate_bytes_s, burst_bytes)
        self._fd = read_fd
        self._lock = threading.Lock()  # held from a read until its bytes are handled
        self._stop = threading.Event()

    def drained(self) -> bool:
        """True when everything written into the pipe so far has been handled."""
        if self._done.is_set():
            return True
        if not self._lock.acquire(blocking=False):
            return False  # a chunk is being written right now
        try:
            return self._fd < 0 or unread_bytes(self._fd) == 0
        except OSError:
            return True
        finally:
            self._lock.release()

    def stop(self) -> None:
        """End the pump at its next wake-up even if a writer still holds the pipe open."""
        self._stop.set()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        try:
            while not self._stop.is_set():
                if not poller.poll(WAKE_S * 1000):
                    continue
                with self._lock:
                    try:
                        data = os.read(self._fd, CHUNK_BYTES)
                    except OSError:
                        break
                    if not data:
                        break
                    let_through = self._sink.accept(data)
                if not let_through:
                    self._stop.wait(THROTTLE_S)
            with self._lock:
                self._sink.flush_marker()
        finally:
            with self._lock:
                self._log.close()
                os.close(self._fd)
                self._fd = -1
            self._done.set()
