"""Small helpers to read ASGI request bodies with a cap and to send whole responses."""

from __future__ import annotations

from collections.abc import Iterable

from polyhost.http.types import Receive, Scope, Send


class BodyTooLarge(Exception):
    """The body is larger than the cap; reading stopped without buffering the rest."""


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of a request header (`name` lowercase), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _discard(receive: Receive, budget: int) -> None:
    """Read and drop the rest of a refused body (up to `budget` bytes), so the client, still
    sending, reads our error answer instead of a connection reset."""
    while budget > 0:
        message = await receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            return
        budget -= len(message.get("body", b""))


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """Read the whole body, refusing as soon as `limit` is passed; never buffers more."""
    if scope.get("polyhost.body_too_large"):
        raise BodyTooLarge()  # polyhost's own server already dropped it at its route's cap
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > 4 * limit:
        raise BodyTooLarge()  # far too large to be worth draining: refuse at once
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if chunk:
            size += len(chunk)
            if size > limit:
                if more:
                    await _discard(receive, 3 * limit)
                raise BodyTooLarge()
            chunks.append(chunk)
        if not more:
            break
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    all_headers = [(b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})
