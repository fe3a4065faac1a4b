"""The model of scenario 18 (asynchronous inference): answers `POST /invocations` after a fixed
service time, as a model that takes a while would, echoing the body with its Content-Type.

`BENCH_SERVICE_MS` (default 250) is the time each answer takes; while the file named by
`BENCH_HOLD` (if set) does not exist, answers wait for it, so a benchmark can fill a queue
before it lets the model drain it. One request at a time per connection (the router and the
direct client both keep one request in flight per connection), many connections at once. An
asyncio protocol over httptools, as bench/containers/echo.py; started by polyhost
(`SAGEMAKER_BIND_TO_PORT`) or by the benchmark for the direct baseline (`python
async_container.py PORT`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httptools

_PING_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
SERVICE_S = float(os.environ.get("BENCH_SERVICE_MS", "250")) / 1000.0
HOLD = os.environ.get("BENCH_HOLD")


class SlowEcho(asyncio.Protocol):
    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._content_type = b"application/octet-stream"
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def on_message_begin(self) -> None:
        self._url = b""
        self._content_type = b"application/octet-stream"
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-type":
            self._content_type = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._transport is None:
            return
        if self._url == b"/ping":
            self._transport.write(_PING_OK)
            return
        asyncio.get_running_loop().create_task(self._answer(b"".join(self._body)))

    async def _answer(self, body: bytes) -> None:
        while HOLD and not os.path.exists(HOLD):
            await asyncio.sleep(0.02)
        await asyncio.sleep(SERVICE_S)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (self._content_type, len(body), body)
        )


async def _serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SlowEcho, host, port, backlog=2048)
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
    asyncio.run(_serve(os.environ.get("POLYHOST_BIND_HOST", "127.0.0.1"), port))


if __name__ == "__main__":
    main()
