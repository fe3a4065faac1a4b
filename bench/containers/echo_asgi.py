"""The light container again, as a raw ASGI app on uvicorn (httptools, uvloop).

The same contract as `echo.py` (`GET /ping` 200, `POST /invocations` echoes the body with its
Content-Type) on the server stack polyhost's own serving stacks use (`polyhost.stacks.toolkit`:
uvicorn with a raw ASGI app). It costs more per request than `echo.py`'s bare protocol, as a
real container built on a Python web server does; router overhead is measured against both.
Port: first argument, else `SAGEMAKER_BIND_TO_PORT` (8080).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Message = MutableMapping[str, Any]
_TEXT = [(b"content-type", b"text/plain"), (b"content-length", b"0")]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/invocations" and scope["method"] == "POST":
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = next(
            (v for k, v in scope["headers"] if k == b"content-type"), b"application/octet-stream"
        )
        headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    status = 200 if scope["path"] == "/ping" else 404
    await send({"type": "http.response.start", "status": status, "headers": _TEXT})
    await send({"type": "http.response.body", "body": b""})


def main() -> None:
    port = (
        int(sys.argv[1])
        if len(sys.argv) > 1
        else int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    )
    uvicorn.run(
        app,
        host=os.environ.get("POLYHOST_BIND_HOST", "127.0.0.1"),
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
