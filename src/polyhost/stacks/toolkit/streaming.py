"""Streamed answers of the built-in stacks: a handler that returns an iterator is sent as it
yields, one HTTP/1.1 chunk per item, for InvokeEndpointWithResponseStream (a token generator's
words reach the client as they are made).

The first item is computed on the worker thread with the rest of the handler chain, so an
error before any output is still an ordinary error answer (500 with its message) and the
answer's Content-Type can come from it. Every later item is computed off the event loop (one
executor hop per item: `/ping` keeps answering while a long generation runs) and written
before the next is asked for, so a client that reads slowly slows the generator down instead
of filling memory. An error after the first item cannot become an error answer any more: the
connection is closed without the last chunk, which the router reports to its client as a
broken stream (ModelStreamError), never as a complete answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from types import GeneratorType
from typing import Any

log = logging.getLogger("polyhost.stack.streaming")

_END = object()


class StreamFailed(Exception):
    """The handler's iterator raised after the answer began: the connection is dropped."""


def is_stream(value: Any) -> bool:
    """Whether a handler's result is to be streamed: a generator or another iterator (an
    ndarray, a list or a string is iterable but no iterator, and is answered whole)."""
    return isinstance(value, (GeneratorType, Iterator)) and not isinstance(
        value, (bytes, bytearray, memoryview, str)
    )


def encoded(
    items: Iterator[Any], encode: Callable[[Any], tuple[bytes, str | None]]
) -> tuple[bytes, str | None, Iterator[bytes]]:
    """The first item's bytes and content type (b"", None for an empty iterator), and the
    rest as bytes; `encode` turns one item into (bytes, its content type or None)."""
    first = next(items, _END)
    if first is _END:
        return b"", None, iter(())
    body, content_type = encode(first)

    def rest() -> Iterator[bytes]:
        try:
            for item in items:
                yield encode(item)[0]
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    return body, content_type, rest()


async def send_stream(
    send: Any,
    receive: Any,
    status: int,
    headers: list[tuple[bytes, bytes]],
    first: bytes,
    stream: Iterator[bytes],
) -> None:
    """Answer with `first`, then every chunk of `stream` as it comes (no Content-Length: the
    ASGI server sends chunks). Stops early, closing the iterator, when the client leaves."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    loop = asyncio.get_running_loop()
    watcher = loop.create_task(watch())
    try:
        if first:
            await send({"type": "http.response.body", "body": first, "more_body": True})
        while not gone.is_set():
            try:
                chunk = await loop.run_in_executor(None, next, stream, _END)
            except Exception as error:
                log.exception("the handler's stream failed after the answer began")
                raise StreamFailed(str(error)) from error
            if chunk is _END:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    finally:
        watcher.cancel()
        close = getattr(stream, "close", None)
        if close is not None:  # a generator left early runs its `finally` now
            await loop.run_in_executor(None, close)
