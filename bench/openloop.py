"""An open-loop HTTP load generator: latency at a fixed offered rate, up to saturation.

A closed-loop tool (hey, wrk) waits for an answer before it sends again, so when the server
slows down it quietly sends less and its latencies look better than a user would see
("coordinated omission"). Here request i is due at `start + i / rate` whatever happened before;
its latency counts from that planned moment, so time spent queueing (for a connection, or in the
server) is part of it. wrk2 does this in C; it is not packaged here, so this is a small asyncio
client over httptools (on uvloop), run in its own process (pinned by the caller) and printing
one JSON line:

    python -m bench.openloop URL BODY_FILE CONTENT_TYPE --rate 500 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
import urllib.parse
from pathlib import Path

import httptools


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._finish(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish(ConnectionError("connection closed"))

    def on_message_complete(self) -> None:
        if not self._parser.should_keep_alive():
            self.closed = True
            if self._transport is not None:
                self._transport.close()
        self._finish(self._parser.get_status_code())

    def _finish(self, outcome: int | BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)

    def send(self, data: bytes) -> asyncio.Future[int]:
        assert self._transport is not None
        self._waiter = self._loop.create_future()
        self._transport.write(data)
        return self._waiter


class OpenLoop:
    def __init__(self, url: str, requests: list[bytes], max_connections: int) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.requests = requests
        self.max_connections = max_connections
        self.idle: list[_Connection] = []
        self.opened = 0
        self.freed = asyncio.Condition()
        self.latencies: list[float] = []
        self.errors = 0
        self.error_kinds: dict[str, int] = {}
        self.last_done = 0.0

    async def _acquire(self) -> _Connection:
        loop = asyncio.get_running_loop()
        while True:
            while self.idle:
                connection = self.idle.pop()
                if not connection.closed:
                    return connection
                self.opened -= 1
            if self.opened < self.max_connections:
                self.opened += 1
                try:
                    _, protocol = await loop.create_connection(
                        lambda: _Connection(loop), self.host, self.port
                    )
                except OSError:
                    self.opened -= 1
                    raise
                return protocol
            async with self.freed:
                await self.freed.wait()

    async def _release(self, connection: _Connection) -> None:
        if connection.closed:
            self.opened -= 1
        else:
            self.idle.append(connection)
        async with self.freed:
            self.freed.notify()

    def _error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    async def _one(self, data: bytes, due: float) -> None:
        try:
            connection = await self._acquire()
        except OSError:
            self._error("connect")
            return
        try:
            status = await asyncio.wait_for(connection.send(data), timeout=30)
        except (OSError, TimeoutError, httptools.HttpParserError):
            connection.closed = True
            self._error("connection")
            await self._release(connection)
            return
        now = time.perf_counter()
        await self._release(connection)
        if 200 <= status < 300:
            self.latencies.append((now - due) * 1000.0)
        else:
            self._error(str(status))
        self.last_done = max(self.last_done, now)

    async def run(self, rate: float, duration: float) -> dict[str, object]:
        total = max(1, int(rate * duration))
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter() + 0.05
        for index in range(total):
            due = start + index / rate
            delay = due - time.perf_counter()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            data = self.requests[index % len(self.requests)]
            tasks.append(asyncio.ensure_future(self._one(data, due)))
        await asyncio.gather(*tasks)
        for connection in self.idle:
            connection.closed = True
        latencies = sorted(self.latencies)

        def pct(p: float) -> float:
            if not latencies:
                return math.nan
            return latencies[min(len(latencies), max(1, math.ceil(p / 100 * len(latencies)))) - 1]

        elapsed = max(self.last_done - start, 1e-9)
        return {
            "offered_rps": rate,
            "achieved_rps": len(latencies) / max(elapsed, duration),
            "sent": total,
            "completed": len(latencies),
            "errors": self.errors,
            "p50_ms": pct(50),
            "p90_ms": pct(90),
            "p99_ms": pct(99),
            "max_ms": latencies[-1] if latencies else math.nan,
            "error_kinds": self.error_kinds,
        }


def build_requests(
    url: str, body: bytes, content_type: str, rotate: tuple[str, list[str]] | None
) -> list[bytes]:
    parts = urllib.parse.urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
    )
    if rotate is None:
        return [head.encode() + b"\r\n" + body]
    name, values = rotate
    return [f"{head}{name}: {value}\r\n\r\n".encode() + body for value in values]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.openloop", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("body_file", type=Path)
    parser.add_argument("content_type")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of sending")
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--rotate", help="HEADER=v1,v2,...: one value per request, in turn")
    args = parser.parse_args(argv)
    rotate = None
    if args.rotate:
        name, _, values = args.rotate.partition("=")
        rotate = (name, values.split(","))
    requests = build_requests(args.url, args.body_file.read_bytes(), args.content_type, rotate)

    async def go() -> dict[str, object]:
        return await OpenLoop(args.url, requests, args.max_connections).run(
            args.rate, args.duration
        )

    try:
        import uvloop

        result = uvloop.run(go())
    except ImportError:  # pragma: no cover - uvloop comes with polyhost on POSIX
        result = asyncio.run(go())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
