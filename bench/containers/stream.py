"""The streaming container of the benchmarks: answers `POST /invocations` in HTTP/1.1 chunks.

The body says what to stream, as ASCII `TOTAL CHUNK` (bytes in all, bytes per chunk). The head
goes out with the first chunk in one write, and the rest as fast as the connection takes it
(writes pause while the transport is above its high-water mark), so the time to the first byte
and the throughput measured around it are the router's, not this program's. An asyncio
protocol over httptools, as `echo.py`; started by polyhost (`SAGEMAKER_BIND_TO_PORT`) or by the
benchmark for the direct baseline (`python stream.py PORT`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httptools

_PING_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


class StreamProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._body = b""
        self._remaining = 0
        self._frame = b""
        self._chunk = 0
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._pump()

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = b""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None:
            return
        if self._url == b"/ping":
            transport.write(_PING_OK)
            return
        total, chunk = (int(part) for part in self._body.split())
        first = min(chunk, total)
        transport.write(_HEAD + b"%x\r\n" % first + b"x" * first + b"\r\n")
        self._remaining = total - first
        self._chunk = chunk
        self._frame = b"%x\r\n" % chunk + b"x" * chunk + b"\r\n"
        self._pump()

    def _pump(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        size = self._chunk
        while self._remaining > 0 and not self._paused:
            if self._remaining >= size:
                transport.write(self._frame)
                self._remaining -= size
            else:
                last = self._remaining
                transport.write(b"%x\r\n" % last + b"x" * last + b"\r\n")
                self._remaining = 0
        if self._remaining == 0 and self._frame:
            self._frame = b""
            transport.write(b"0\r\n\r\n")


async def _serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(StreamProtocol, host, port, backlog=2048)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    port = (
        int(sys.argv[1])
        if len(sys.argv) > 1
        else int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    )
    host = os.environ.get("POLYHOST_BIND_HOST", "127.0.0.1")
    try:
        import uvloop

        uvloop.run(_serve(host, port))
    except ImportError:  # pragma: no cover
        asyncio.run(_serve(host, port))


if __name__ == "__main__":
    main()
