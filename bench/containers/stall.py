"""A container that takes invocations and holds them: the hung neighbour of the isolation bench.

`GET /ping` answers 200. `POST /invocations` is read and then left unanswered until the file
named by STALL_RELEASE_FILE exists; all held requests are then answered 200 with an empty body,
and later ones at once. The number of requests held right now is kept in the file named by
STALL_COUNT_FILE, so a benchmark knows when the container is full without sending it more.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"


class Stall:
    def __init__(self, count_file: Path | None, release_file: Path | None) -> None:
        self.count_file = count_file
        self.release_file = release_file
        self.held = 0
        self.released = asyncio.Event()

    def _count(self, delta: int) -> None:
        self.held += delta
        if self.count_file is not None:
            partial = self.count_file.with_suffix(".tmp")
            partial.write_text(str(self.held))
            partial.replace(self.count_file)  # a reader never sees half a number

    async def watch_release(self) -> None:
        while self.release_file is not None and not self.release_file.exists():
            await asyncio.sleep(0.05)
        self.released.set()

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                if method == "POST" and path == "/invocations":
                    self._count(+1)
                    try:
                        await self.released.wait()
                    finally:
                        self._count(-1)
                    writer.write(_OK)
                elif path == "/ping":
                    writer.write(_OK)
                else:
                    writer.write(_NOT_FOUND)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _serve(host: str, port: int) -> None:
    count = os.environ.get("STALL_COUNT_FILE")
    release = os.environ.get("STALL_RELEASE_FILE")
    stall = Stall(Path(count) if count else None, Path(release) if release else None)
    watcher = asyncio.create_task(stall.watch_release())
    server = await asyncio.start_server(stall.connection, host, port, backlog=2048)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    watcher.cancel()


def main() -> None:
    port = int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    host = os.environ.get("POLYHOST_BIND_HOST", "127.0.0.1")
    asyncio.run(_serve(host, port))


if __name__ == "__main__":
    main()
