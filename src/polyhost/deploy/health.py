"""The contract's health check: `GET /ping` must answer 200 (within 2 s, as SageMaker asks).

Used twice: at start, polled until a container first answers (`group.wait_healthy`), and while
it serves, once per interval (`HealthWatch`, driven by the supervisor): a live process whose
`/ping` fails `failures` checks in a row is taken for hung and restarted. One check is one
short-lived connection bounded by PING_TIMEOUT_S, so a container that stops answering costs its
supervisor a wait, never the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

PING_TIMEOUT_S = 2.0
# A status line longer than this is not HTTP; reading stops there.
MAX_STATUS_LINE = 1024


async def ping(host: str, port: int, timeout: float = PING_TIMEOUT_S) -> bool:
    """True when the container answers `/ping` with 200; any failure is simply False."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=MAX_STATUS_LINE)
            writer.write(
                f"GET /ping HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
            )
            status_line = await reader.readline()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
        return False
    finally:
        if writer is not None:
            writer.close()
    parts = status_line.split(b" ", 2)
    return len(parts) >= 2 and parts[1] == b"200"


@dataclass
class HealthWatch:
    """When the next check of one serving container is due, and its failures in a row."""

    interval_s: float
    failures_allowed: int
    due: float  # loop time of the next check
    failures: int = 0

    def record(self, healthy: bool, now: float) -> bool:
        """Note one check's outcome; True when the failures in a row reached the threshold."""
        self.due = now + self.interval_s
        self.failures = 0 if healthy else self.failures + 1
        return self.failures >= self.failures_allowed
