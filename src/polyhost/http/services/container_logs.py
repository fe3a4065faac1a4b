"""`GET /polyhost/endpoints/{name}/logs`: container logs over HTTP, for `polyhost logs`.

SageMaker sends container output to CloudWatch; polyhost keeps it in one append-only file per
container on the server. Clients must never read the server's files (the server may run on
another machine or as another user), so this route serves them. Byte offsets let a client follow
a log by polling, as CloudWatch's GetLogEvents does with its tokens:

    GET /polyhost/endpoints/{name}/logs?container=H&stream=S&offset=N&limit=BYTES&tail=LINES

- `container` keeps the streams of one container hostname (every variant and replica of it),
  `stream` keeps the one stream named `{variant}/{instance}/{hostname}`.
- `offset` is where reading starts, in bytes; a negative offset counts from the end.
- `limit` caps the bytes returned per stream (default 256 KiB, at most 1 MiB); 0 returns only
  the sizes, which is how a follower learns cheaply whether anything was written.
- `tail` returns the last LINES lines instead (found within the last `limit` bytes).

Answer: `{"streams": [{"name", "hostname", "variant", "instance_id", "size", "offset",
"next_offset", "text"}]}`; reading on from `next_offset` never repeats or skips a byte, and a
chunk never ends inside a UTF-8 sequence (text is decoded with replacement characters).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from polyhost.errors import (
    MethodNotAllowed,
    NoSuchRoute,
    NotFound,
    ServiceError,
    ValidationException,
)
from polyhost.http.errors import aws_json_error
from polyhost.http.io import send_response
from polyhost.http.types import Receive, Scope, Send
from polyhost.logs.streams import LogStream, read_chunk

PREFIX = "/polyhost/endpoints"
DEFAULT_LIMIT = 256 * 1024
MAX_LIMIT = 1024 * 1024
# Reads larger than this go to a worker thread so the event loop (and every invocation on it)
# never waits on the disk for long.
THREAD_THRESHOLD = 64 * 1024

LogStreams = Callable[[str], list[LogStream]]

_JSON = [(b"content-type", b"application/json")]
_PARAMETERS = ("container", "stream", "offset", "limit", "tail")


@dataclass(frozen=True)
class LogQuery:
    """The parsed query string of one request."""

    container: str | None = None
    stream: str | None = None
    offset: int = 0
    limit: int = DEFAULT_LIMIT
    tail: int | None = None

    @classmethod
    def parse(cls, query_string: bytes) -> LogQuery:
        try:
            params = parse_qs(query_string.decode("ascii"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise ValidationException(
                "The query string must be ASCII (percent-encode it)."
            ) from None
        unknown = sorted(set(params) - set(_PARAMETERS))
        if unknown:
            raise ValidationException(
                f"Unknown query parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(_PARAMETERS)}.",
            )
        for key, values in params.items():
            if len(values) > 1:
                raise ValidationException(f"Query parameter {key} is given more than once.")
        single = {key: values[0] for key, values in params.items()}
        limit = _integer(single, "limit", DEFAULT_LIMIT, minimum=0)
        tail = single.get("tail")
        return cls(
            container=single.get("container") or None,
            stream=single.get("stream") or None,
            offset=_integer(single, "offset", 0, minimum=None),
            limit=min(limit, MAX_LIMIT),
            tail=None if tail is None else _integer(single, "tail", 0, minimum=0),
        )


def _integer(params: dict[str, str], key: str, default: int, minimum: int | None) -> int:
    raw = params.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationException(
            f"Query parameter {key} must be an integer, not {raw!r}."
        ) from None
    if minimum is not None and value < minimum:
        raise ValidationException(f"Query parameter {key} must be >= {minimum}, not {value}.")
    return value


class LogsRoute:
    """The ASGI route; `streams(endpoint_name)` lists the log streams of an endpoint's containers.

    `streams` answers from the deployer's memory on the event loop (no I/O), so it is called
    directly; an empty list means the endpoint is unknown or has not started a container yet.
    """

    def __init__(self, streams: LogStreams, prefix: str = PREFIX) -> None:
        self._streams = streams
        self._prefix = prefix.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        try:
            name = self._endpoint_name(scope["path"])
            if scope["method"] != "GET":
                raise MethodNotAllowed(f"Use GET on {self._prefix}/{name}/logs.", "GET")
            query = LogQuery.parse(scope.get("query_string", b""))
            selected = self._select(name, query)
            chunks = [await self._read(stream, query) for stream in selected]
        except ServiceError as error:
            status, headers, body = aws_json_error(error)
            await send_response(send, status, body, headers)
            return status
        body = json.dumps({"streams": chunks}, separators=(",", ":")).encode()
        await send_response(send, 200, body, _JSON)
        return 200

    def _endpoint_name(self, path: str) -> str:
        rest = path[len(self._prefix) :] if path.startswith(self._prefix + "/") else ""
        parts = rest.split("/")
        if len(parts) != 3 or parts[0] != "" or not parts[1] or parts[2] != "logs":
            raise NoSuchRoute(
                f"No route for {path}; the logs of an endpoint are at "
                f"GET {self._prefix}/{{EndpointName}}/logs."
            )
        return parts[1]

    def _select(self, name: str, query: LogQuery) -> list[LogStream]:
        streams = self._streams(name)
        if not streams:
            raise NotFound(
                f'Could not find logs of endpoint "{name}": it does not exist (names are '
                "case-sensitive here) or none of its containers has been started yet.",
            )
        if query.container is not None:
            hostnames = sorted({s.hostname for s in streams})
            streams = [s for s in streams if s.hostname == query.container]
            if not streams:
                raise NotFound(
                    f'Endpoint "{name}" has no container "{query.container}"; '
                    f"its containers are: {', '.join(hostnames)}.",
                )
        if query.stream is not None:
            names = [s.name for s in streams]
            streams = [s for s in streams if s.name == query.stream]
            if not streams:
                raise NotFound(
                    f'Endpoint "{name}" has no log stream "{query.stream}"'
                    f"{' for that container' if query.container else ''}; "
                    f"its streams are: {', '.join(names)}.",
                )
        return streams

    @staticmethod
    async def _read(stream: LogStream, query: LogQuery) -> dict[str, Any]:
        args = (stream.path, query.offset, query.limit, query.tail)
        if query.limit > THREAD_THRESHOLD:
            chunk = await asyncio.to_thread(read_chunk, *args)
        else:
            chunk = read_chunk(*args)
        return {
            "name": stream.name,
            "hostname": stream.hostname,
            "variant": stream.variant_name,
            "instance_id": stream.instance_id,
            "size": chunk.size,
            "offset": chunk.offset,
            "next_offset": chunk.next_offset,
            "text": chunk.text,
        }
