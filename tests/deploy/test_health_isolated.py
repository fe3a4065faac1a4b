"""An isolated instance's container is reached through its network: the ping and the pool."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from polyhost.backends.netns import NetworkNamespace, probe
from polyhost.deploy.health import ping
from polyhost.router.upstream import UpstreamConnectFailed, UpstreamPool

pytestmark = pytest.mark.skipif(probe() is not None, reason="cannot make network namespaces")

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _port_free_outside(namespace: NetworkNamespace) -> tuple[socket.socket, socket.socket]:
    """A listener on the namespace's loopback, and a socket bound (never listening) to the same
    port on the host's: so a connection from outside is refused, whatever else runs here."""
    for _ in range(50):
        with namespace.entered():
            listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        outside = socket.socket()
        try:
            outside.bind(("127.0.0.1", int(listener.getsockname()[1])))
        except OSError:  # the host's port is taken: another try
            outside.close()
            listener.close()
            continue
        return listener, outside
    raise RuntimeError("no port free both inside the namespace and outside it")


@pytest.fixture
def inside() -> Iterator[tuple[NetworkNamespace, int]]:
    """A namespace with a tiny HTTP server on its loopback (answers 200 to anything)."""
    namespace = NetworkNamespace.create("test")
    listener, outside = _port_free_outside(namespace)
    port = int(listener.getsockname()[1])

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"POST"):
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                    while len(body) < length:
                        body += conn.recv(4096)
                conn.sendall(ANSWER)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield namespace, port
    listener.close()
    outside.close()
    namespace.close_now()


def test_the_ping_goes_through_the_instances_network(inside: tuple[NetworkNamespace, int]) -> None:
    namespace, port = inside

    async def both() -> tuple[bool, bool]:
        outside = await ping("127.0.0.1", port, timeout=1)
        through = await ping("127.0.0.1", port, timeout=1, connect=namespace.connect)
        return outside, through

    assert asyncio.run(both()) == (False, True)


def test_the_pool_goes_through_the_instances_network(inside: tuple[NetworkNamespace, int]) -> None:
    namespace, port = inside

    async def both() -> int:
        with pytest.raises(UpstreamConnectFailed):
            await UpstreamPool("127.0.0.1", port, 4).post(b"/invocations", [], b"x", 2.0, 100)
        pool = UpstreamPool("127.0.0.1", port, 4, connect=namespace.connect)
        answer = await pool.post(b"/invocations", [], b"x", 2.0, 100)
        pool.close()
        return answer.status

    assert asyncio.run(both()) == 200
