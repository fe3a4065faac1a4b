"""The light container of the benchmarks: the container contract at the least possible cost.

`GET /ping` answers 200 and `POST /invocations` echoes the request body with its Content-Type.
It is an asyncio protocol over httptools' parser (on uvloop when installed), without a web
framework, so that what a benchmark measures around it is the router, not the container. The
same program serves both sides of a comparison: started by polyhost (port from
`SAGEMAKER_BIND_TO_PORT`) and started by the benchmark itself for the direct baseline
(`python echo.py PORT`).

ECHO_SERVICE_MS makes every copy a server of fixed capacity, for benchmarks of scaling: each
invocation holds the process for that long (a blocking sleep, as a model's compute would), so
one copy answers at most 1000/ECHO_SERVICE_MS requests a second and more load queues.

ECHO_SLOW_CLAIM (a path) and ECHO_SLOW_MS make one copy of several slow, for benchmarks of
routing strategies: the copy that creates the file first (O_EXCL) answers every invocation
ECHO_SLOW_MS later; the others answer at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import httptools

_PING_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"


def _slow_delay_s() -> float:
    claim = os.environ.get("ECHO_SLOW_CLAIM")
    if not claim:
        return 0.0
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return 0.0
    return float(os.environ.get("ECHO_SLOW_MS", "0")) / 1000


SLOW_S = _slow_delay_s()
SERVICE_S = float(os.environ.get("ECHO_SERVICE_MS", "0")) / 1000


class EchoProtocol(asyncio.Protocol):
    """One keep-alive connection; requests are answered in order as they complete."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._content_type = b"application/octet-stream"
        self._chunks: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._content_type = b"application/octet-stream"
        self._chunks = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self._content_type = value

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        transport = self._transport
        if transport is None:
            return
        method = self._parser.get_method()
        if method == b"POST" and self._url == b"/invocations":
            body = b"".join(self._chunks)
            head = b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (
                self._content_type,
                len(body),
            )
            if SERVICE_S:
                time.sleep(SERVICE_S)
            if SLOW_S:
                asyncio.get_running_loop().call_later(SLOW_S, transport.writelines, (head, body))
            else:
                transport.writelines((head, body))
        elif self._url == b"/ping":
            transport.write(_PING_OK)
        else:
            transport.write(_NOT_FOUND)
        if not self._parser.should_keep_alive():
            transport.close()


async def _serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, host, port, backlog=2048)
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
    except ImportError:  # pragma: no cover - uvloop is installed with polyhost on POSIX
        asyncio.run(_serve(host, port))


if __name__ == "__main__":
    main()
