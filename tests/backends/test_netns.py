"""Network namespaces: made and held by the server, reachable only through it."""

from __future__ import annotations

import asyncio
import os
import socket
import threading

import pytest

from polyhost.backends.netns import NetworkNamespace, probe

pytestmark = pytest.mark.skipif(probe() is not None, reason="cannot make network namespaces")


def _listen_inside(namespace: NetworkNamespace) -> tuple[socket.socket, int]:
    with namespace.entered():
        server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server, int(server.getsockname()[1])


def test_a_namespace_has_its_own_loopback_and_the_server_reaches_it() -> None:
    namespace = NetworkNamespace.create("test")
    server, port = _listen_inside(namespace)
    try:
        with pytest.raises(ConnectionRefusedError):  # not on the host's loopback
            socket.create_connection(("127.0.0.1", port), timeout=1).close()

        async def through() -> None:
            sock = await namespace.connect("127.0.0.1", port)
            sock.close()

        asyncio.run(through())
    finally:
        server.close()
        namespace.close_now()


def test_entering_returns_the_thread_to_the_servers_namespace() -> None:
    namespace = NetworkNamespace.create("test")
    try:
        before = os.stat("/proc/thread-self/ns/net").st_ino
        with namespace.entered():
            inside = os.stat("/proc/thread-self/ns/net").st_ino
        assert inside == os.fstat(namespace.fd).st_ino != before
        assert os.stat("/proc/thread-self/ns/net").st_ino == before
    finally:
        namespace.close_now()


def test_two_namespaces_do_not_see_each_other() -> None:
    first, second = NetworkNamespace.create("a"), NetworkNamespace.create("b")
    server, port = _listen_inside(first)
    try:

        async def across() -> None:
            with pytest.raises(ConnectionRefusedError):
                (await second.connect("127.0.0.1", port)).close()

        asyncio.run(across())
    finally:
        server.close()
        first.close_now()
        second.close_now()


def test_the_probe_tells_an_unprivileged_process_why_not() -> None:
    """Run in a child that dropped root, as a server without privilege would be."""
    if os.geteuid() != 0:
        assert probe() is not None
        return
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, (probe() or "").encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as answer:
        reason = answer.read().decode()
    assert reason == "unshare(CLONE_NEWNET) failed: Operation not permitted"


def test_a_thread_made_namespace_is_not_the_callers() -> None:
    """`create` unshares in a thread of its own: the caller's namespace is untouched."""
    before = os.stat("/proc/thread-self/ns/net").st_ino
    NetworkNamespace.create("x").close_now()
    assert os.stat("/proc/thread-self/ns/net").st_ino == before
    assert threading.active_count() >= 1
