"""The contract's health check: `GET /ping` must answer 200 (within 2 s, as SageMaker asks)."""

from __future__ import annotations

import asyncio

PING_TIMEOUT_S = 2.0


async def ping(host: str, port: int, timeout: float = PING_TIMEOUT_S) -> bool:
    """True when the container answers `/ping` with 200; any failure is simply False."""
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                f"GET /ping HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
            )
            status_line = await reader.readline()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        if writer is not None:
            writer.close()
    parts = status_line.split(b" ", 2)
    return len(parts) >= 2 and parts[1] == b"200"
