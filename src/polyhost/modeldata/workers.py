"""A small bounded pool of threads for model data work, apart from asyncio's default executor.

Downloads and extractions block for minutes. Run on asyncio's default executor (what
`asyncio.to_thread` uses), a few of them would take every thread the control plane needs to
answer CreateModel or ListModels. This pool has its own bound (`--artifact-workers`): past it,
work waits in a queue, and nothing else in the server waits behind it.

Threads start when there is work and end when the queue is empty, so an idle server holds none,
and they are daemon threads: a worker stuck in a call that cannot be interrupted never keeps
the process from exiting once `close` has given it its grace period. On Linux each thread
carries an OS-level name (`polyhost-model`), so `top -H` or `ps -L` show what they are.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

_T = TypeVar("_T")
THREAD_NAME = "polyhost-model"
_PR_SET_NAME = 15


def name_os_thread(name: str) -> None:
    """Name the calling thread for the OS (Linux; 15 bytes at most), best effort."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


class PoolClosed(RuntimeError):
    """Work was submitted after `close`."""


class WorkerPool:
    def __init__(self, size: int, name: str = THREAD_NAME) -> None:
        if size < 1:
            raise ValueError(f"a worker pool needs at least one thread, not {size}")
        self._size = size
        self._name = name
        self._lock = threading.Lock()
        self._queue: deque[tuple[Future[Any], Callable[[], Any]]] = deque()
        self._threads: set[threading.Thread] = set()
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    def busy(self) -> int:
        """Threads alive now (running work or about to end)."""
        with self._lock:
            return len(self._threads)

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        future: Future[_T] = Future()
        with self._lock:
            if self._closed:
                raise PoolClosed("the model data workers are shut down")
            self._queue.append((future, lambda: fn(*args)))
            if len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.add(thread)
                thread.start()
        return future

    def _work(self) -> None:
        name_os_thread(self._name)
        me = threading.current_thread()
        while True:
            with self._lock:
                if not self._queue:
                    self._threads.discard(me)
                    return
                future, job = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # cancelled while it waited
            try:
                result = job()
            except BaseException as error:  # handed to the waiter, whatever it is
                future.set_exception(error)
            else:
                future.set_result(result)

    def close(self, grace_s: float) -> bool:
        """Refuse new work, drop what waits, and give running work `grace_s` to end.

        True when every thread ended in time; a thread still running after that is left to
        finish (or to die with the process: the threads are daemons)."""
        with self._lock:
            self._closed = True
            waiting = list(self._queue)
            self._queue.clear()
            threads = list(self._threads)
        for future, _job in waiting:
            future.cancel()
        deadline = time.monotonic() + grace_s
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
        return not any(thread.is_alive() for thread in threads)
