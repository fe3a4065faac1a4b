"""A polyhost server with short listener deadlines, so attacks end within a test's time."""

from __future__ import annotations

import pytest

from tests.reliability.hostile_client import open_descriptors, ping
from tests.support.server import PolyhostProcess, ServerFactory

HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
MAX_CONNECTIONS = 64


@pytest.fixture(scope="module")
def hostile_server(start_server: ServerFactory) -> PolyhostProcess:
    return start_server(
        *("--header-timeout", str(HEADER_TIMEOUT_S)),
        *("--body-timeout", str(BODY_TIMEOUT_S)),
        *("--keep-alive-timeout", "2"),
        *("--max-connections", str(MAX_CONNECTIONS)),
        name="hostile",
        images=False,
    )


@pytest.fixture(scope="module")
def server_pid(hostile_server: PolyhostProcess) -> int:
    assert hostile_server.process is not None
    return hostile_server.process.pid


@pytest.fixture
def baseline(hostile_server: PolyhostProcess, server_pid: int) -> int:
    """The server's descriptor count at rest, taken once a request has warmed it up."""
    assert ping(hostile_server.port) == 200
    return open_descriptors(server_pid)
