"""The two things every loop of a model fetch checks: its deadline and its cancellation.

A fetch runs in a worker thread, where nothing can interrupt it from outside. So it holds a
`FetchLimits` and calls `check()` between chunks — of a download, of a hash, of an extraction —
and stops with an error once `ModelDataDownloadTimeoutInSeconds` has passed or the endpoint it
works for was deleted, updated or the server is stopping (`Cancellation.cancel()`).

A socket read can block between two checks; sockets a fetch opens are registered with its
`Cancellation` (`watch`), and cancelling shuts them down, which wakes the blocked read at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from polyhost.modeldata.errors import ArtifactError
from polyhost.modeldata.workers import name_os_thread


class FetchCancelled(ArtifactError):
    """The fetch was cancelled (its endpoint went away); nobody waits for its result."""


class Cancellation:
    """A flag a worker checks, set from any thread; also shuts down the sockets it watches."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        self._event.set()
        self.wake()

    def wake(self) -> None:
        """Shut down the watched sockets, so a read blocked on one returns now."""
        with self._lock:
            watched = list(self._sockets)
        for sock in watched:
            _shut(sock)

    @contextlib.contextmanager
    def watch(self, sock: socket.socket) -> Iterator[socket.socket]:
        """Shut `sock` down if the fetch is (or gets) cancelled while the block runs."""
        with self._lock:
            self._sockets.add(sock)
        try:
            if self.cancelled:
                _shut(sock)
            yield sock
        finally:
            with self._lock:
                self._sockets.discard(sock)


def _shut(sock: socket.socket) -> None:
    """Wake any thread blocked on `sock` (shutdown, unlike close, is safe across threads).

    The plain socket's shutdown also for a TLS socket: `SSLSocket.shutdown` would drop its TLS
    state under the feet of the thread reading it."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _DeadlineTimer(threading.Timer):
    """A timer thread named for the OS apart from the workers (it inherits their name else)."""

    def run(self) -> None:
        name_os_thread("polyhost-timer")
        super().run()


@dataclass(frozen=True)
class FetchLimits:
    deadline: float  # time.monotonic() by which the fetch (download and extraction) must be done
    timeout_s: float  # the same, as given, for messages
    max_bytes: int
    max_files: int
    cancel: Cancellation = field(default_factory=Cancellation)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check(self, label: str, doing: str = "download") -> None:
        """Raise when the fetch was cancelled or its time is up; `doing` names the step."""
        if self.cancel.cancelled:
            raise FetchCancelled(f"Fetching model data {label} was cancelled.")
        if self.remaining() <= 0:
            raise self.timed_out(label, doing)

    def timed_out(self, label: str, doing: str = "download") -> ArtifactError:
        if doing == "extract":
            return ArtifactError(
                f"Model data {label} could not be extracted within {self.timeout_s:g} seconds "
                "(ModelDataDownloadTimeoutInSeconds covers download and extraction)."
            )
        if doing == "copy":
            return ArtifactError(
                f"Model data {label} could not be copied within {self.timeout_s:g} seconds "
                "(ModelDataDownloadTimeoutInSeconds covers copying a model folder too)."
            )
        return ArtifactError(
            f"Failed to download model data from {label}: timed out after "
            f"{self.timeout_s:g} seconds."
        )

    @contextlib.contextmanager
    def sockets_expire(self) -> Iterator[None]:
        """Wake the fetch's sockets at the deadline, even mid-read of a server that trickles.

        A socket timeout bounds one read; a server sending a byte now and then never trips it,
        and a read of response headers never returns to a loop that could check the clock."""
        timer = _DeadlineTimer(max(self.remaining(), 0.0), self.cancel.wake)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def io_timeout(self, cap_s: float) -> float:
        """A socket timeout for one blocking call: what is left of the deadline, at most `cap_s`."""
        return max(min(self.remaining(), cap_s), 0.001)
