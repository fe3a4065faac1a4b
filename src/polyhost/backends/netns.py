"""Network namespaces: one per instance, so its containers share a loopback and nothing else.

On SageMaker only the containers of one instance share a network, and the runtime API is the
only way in. On one machine the containers of every endpoint would share the host's, and a
tenant's container could POST to another tenant's port with no signature and no policy. So,
when the server isolates (`confinement.py`), each instance gets a namespace of its own:

- **Made by the server, held by a descriptor.** A short-lived thread `unshare`s into a new
  namespace, brings its `lo` up (SIOCSIFFLAGS) and opens `/proc/thread-self/ns/net`; the
  descriptor keeps the namespace alive, nothing is mounted and no name is registered. The
  namespace lives while the server holds it or a process runs in it: after a kill -9 it goes
  with the last of the containers the next start reaps, so nothing is left to clean up.
- **Children are born in it.** `setns` applies to the calling thread only, and a child forked
  by a thread starts in that thread's namespace: the process backend forks from a worker
  thread that entered the namespace (`entered`), then returns the thread to the server's own.
  No `preexec_fn` runs in the child.
- **The server's sockets are made in it.** A socket belongs, for its whole life, to the
  namespace its `socket()` call ran in, wherever it is used afterwards. `connect` makes the
  socket inside (two `setns` calls around one `socket`, a few microseconds, on the caller's
  thread) and connects it from the event loop; the router and the health checks reach
  127.0.0.1:port inside the instance, which nothing outside it can.

Entering always returns: if the thread could not go back to the server's namespace its later
sockets would be opened in a tenant's, so that failure ends the process (it does not happen to
a process allowed to enter at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import socket
import struct
import threading
from collections.abc import Iterator

log = logging.getLogger("polyhost.backends.netns")

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
_IFREQ = struct.Struct("16sh22x")  # struct ifreq: the name, then ifr_flags (40 bytes in all)

_libc = ctypes.CDLL(None, use_errno=True)
_host_lock = threading.Lock()
_host_fd: int | None = None


class NamespaceError(OSError):
    """A namespace could not be made or entered; the message says which call failed."""

    def __str__(self) -> str:
        return str(self.strerror)


def _check(result: int, call: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise NamespaceError(number, f"{call} failed: {os.strerror(number)}")


def _host() -> int:
    """The server's own namespace (its main thread's), opened once."""
    global _host_fd
    with _host_lock:
        if _host_fd is None:
            _host_fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        return _host_fd


def _bring_up_loopback() -> None:
    """`ip link set lo up`, for the calling thread's namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        answer = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0))
        flags = _IFREQ.unpack(answer)[1]
        fcntl.ioctl(sock.fileno(), SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | IFF_UP))


class NetworkNamespace:
    """One network namespace, held open by a descriptor (see the module docstring)."""

    def __init__(self, fd: int, description: str) -> None:
        self._fd = fd
        self.description = description

    @classmethod
    def create(cls, description: str) -> NetworkNamespace:
        """A new namespace with only `lo`, up. Blocks for about a millisecond; raises
        NamespaceError (unshare refused: no privilege)."""
        _host()  # opened before any thread leaves it
        made: list[int] = []
        failed: list[BaseException] = []

        def make() -> None:  # this thread ends in the new namespace, and simply ends
            try:
                _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
                _bring_up_loopback()
                made.append(os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
            except BaseException as error:
                failed.append(error)

        thread = threading.Thread(target=make, name="polyhost-netns", daemon=True)
        thread.start()
        thread.join()
        if failed:
            error = failed[0]
            if isinstance(error, NamespaceError):
                raise error
            raise NamespaceError(getattr(error, "errno", None) or 0, str(error)) from error
        return cls(made[0], description)

    @classmethod
    def of_process(cls, pid: int, description: str) -> NetworkNamespace:
        """The namespace process `pid` runs in (a Docker pause container's); OSError if gone."""
        return cls(os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC), description)

    @property
    def fd(self) -> int:
        return self._fd

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block with the calling thread in this namespace; back in the server's after."""
        host = _host()
        _check(_libc.setns(self._fd, CLONE_NEWNET), "setns")
        try:
            yield
        finally:
            if _libc.setns(host, CLONE_NEWNET) != 0:  # pragma: no cover - see the docstring
                log.critical("cannot return a thread to the server's network namespace")
                os._exit(70)

    def open_socket(self, family: int = socket.AF_INET) -> socket.socket:
        """A non-blocking TCP socket of this namespace."""
        with self.entered():
            sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock

    async def connect(self, host: str, port: int) -> socket.socket:
        """A socket connected to `host:port` inside the namespace (raises OSError)."""
        sock = self.open_socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    async def close(self) -> None:
        """Let go of the namespace: it ends once no process runs in it."""
        self.close_now()

    def close_now(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def probe() -> str | None:
    """Why this process cannot make network namespaces, or None when it can."""
    try:
        NetworkNamespace.create("probe").close_now()
    except OSError as error:
        return str(error)
    return None
