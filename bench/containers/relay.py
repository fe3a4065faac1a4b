"""The least a relay can cost: TCP in, TCP out, bytes copied as they come (bench 15's ceiling).

`python relay.py LISTEN_PORT UPSTREAM_PORT` accepts connections on 127.0.0.1:LISTEN_PORT and
pipes each, both ways, to 127.0.0.1:UPSTREAM_PORT with asyncio streams (uvloop when present):
no parsing, no framing, nothing buffered beyond what the transports hold. Whatever polyhost's
streaming path does beyond this (HTTP, event-stream framing, accounting) is its own cost; what
this costs is the second crossing of loopback that any relay pays on the same machine.
"""

from __future__ import annotations

import asyncio
import sys

CHUNK = 1 << 18


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def _serve(listen: int, upstream: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


def main() -> None:
    listen, upstream = int(sys.argv[1]), int(sys.argv[2])
    try:
        import uvloop

        uvloop.run(_serve(listen, upstream))
    except ImportError:  # pragma: no cover - uvloop is installed with polyhost on POSIX
        asyncio.run(_serve(listen, upstream))


if __name__ == "__main__":
    main()
