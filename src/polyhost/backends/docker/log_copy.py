"""Copies a Docker container's output into its rotating log file, at a bounded rate.

The output comes from the daemon's logs API (`follow`), not a pipe, but lands where a process
container's does: `LaunchSpec.log_path`, rotated by size (`logs.files.RotatingLog`) and let through
at `logs.pump.RATE_BYTES_S` with bursts up to `logs.pump.BURST_BYTES`; what exceeds that is dropped
and marked with one `[polyhost: N bytes dropped]` line, exactly as for a process. So
`polyhost logs`, the logs route and FailureReason read Docker containers unchanged.

One thread per container: the SDK's stream is blocking. The stream ends when the container
stops; then a line says how it ended when Docker knows more than an exit code (killed for
going over its memory limit), so a FailureReason or a restart's log shows why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from polyhost.logs.files import RotatingLog
from polyhost.logs.pump import (
    BURST_BYTES,
    RATE_BYTES_S,
    THROTTLE_S,
    LogCopy,
)

log = logging.getLogger("polyhost.backends.docker")


class LogFollower(LogCopy):
    """Writes `chunks` into `logfile` on its own thread; owns (and closes) `logfile`.

    `epilogue` runs once the stream has ended and returns a last line to write, or None.
    `stop` closes the stream through `cancel` (the SDK's CancellableStream.close).
    """

    def __init__(
        self,
        chunks: Iterable[bytes],
        logfile: RotatingLog,
        name: str,
        *,
        cancel: Callable[[], None] | None = None,
        epilogue: Callable[[], str | None] | None = None,
        rate_bytes_s: float = RATE_BYTES_S,
        burst_bytes: float = BURST_BYTES,
    ) -> None:
        super().__init__(logfile, f"docker-log:{name}", rate_bytes_s, burst_bytes)
        self._chunks = chunks
        self._cancel = cancel
        self._epilogue = epilogue
        self._stopping = threading.Event()

    def wait(self, timeout_s: float) -> bool:
        return self._done.wait(timeout_s)

    def stop(self) -> None:
        """End the copy now, even while the container still runs."""
        self._stopping.set()
        if self._cancel is not None and not self._done.is_set():
            try:
                self._cancel()
            except Exception as error:  # the stream may be closing already
                log.debug("closing a log stream: %s", error)

    def _run(self) -> None:
        try:
            for chunk in self._chunks:
                if self._stopping.is_set():
                    break
                if chunk and not self._sink.accept(chunk):
                    self._stopping.wait(THROTTLE_S)
        except Exception as error:  # the daemon went away, or stop() closed the stream
            if not self._stopping.is_set():
                log.warning("log stream of %s ended: %s", self._thread.name[11:], error)
        finally:
            self._sink.flush_marker()
            self._write_epilogue()
            self._log.close()
            self._done.set()

    def _write_epilogue(self) -> None:
        if self._epilogue is None or self._stopping.is_set():
            return
        try:
            line = self._epilogue()
        except Exception as error:
            log.debug("no epilogue for %s: %s", self._thread.name, error)
            return
        if line:
            text = f"[polyhost: {line}]\n".encode()
            self._sink.write_line(text)
