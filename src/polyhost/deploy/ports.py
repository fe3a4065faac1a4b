"""Loopback port blocks for containers: one port to serve on plus a safe range for extras.

Each container gets `SAGEMAKER_BIND_TO_PORT` = the block's first port and
`SAGEMAKER_SAFE_PORT_RANGE` = the rest of the block, so two containers never collide even when
one of them opens a second port. A block is only handed out if its first port is free now.
"""

from __future__ import annotations

import random
import socket
import threading


def port_is_free(host: str, port: int) -> bool:
    """Nothing is bound to the port, not even a connection lingering in TIME_WAIT."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_is_held(host: str, port: int) -> bool:
    """A process has the port bound (listening, say); connections in TIME_WAIT do not count.

    A container restarted on its port leaves TIME_WAIT connections behind that its successor
    binds through (SO_REUSEADDR, as servers do); only a live socket keeps it out.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


class PortAllocator:
    def __init__(
        self, host: str = "127.0.0.1", first: int = 21000, last: int = 30999, block: int = 10
    ) -> None:
        self._host = host
        self._first = first
        self._last = last
        self._block = block
        # Start at a random block: several servers on one machine then rarely try the same
        # ports (a port is only known free, not reserved, until its container binds it).
        blocks = (last - first + 1) // block
        self._next = first + random.randrange(blocks) * block
        self._taken: set[int] = set()
        self._lock = threading.Lock()

    def allocate(self) -> tuple[int, tuple[int, int]]:
        """A free port and its safe range (inclusive), reserved until `release`."""
        with self._lock:
            span = self._last - self._first + 1
            for _ in range(span // self._block):
                port = self._next
                self._next += self._block
                if self._next + self._block - 1 > self._last:
                    self._next = self._first
                if port in self._taken or not port_is_free(self._host, port):
                    continue
                self._taken.add(port)
                return port, (port + 1, port + self._block - 1)
        raise RuntimeError(f"no free port block left in {self._first}-{self._last}")

    def release(self, port: int) -> None:
        with self._lock:
            self._taken.discard(port)
