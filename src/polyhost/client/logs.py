"""`polyhost logs ENDPOINT`: print container logs, and with --follow keep printing.

Reads the server's logs route (polyhost.http.services.container_logs) — never the log files
themselves. Following polls: one cheap request (`limit=0`) per interval returns every stream's
size, and only a stream that grew is read, from the offset where the last read ended, so nothing
is printed twice or skipped. New streams (a replica restarted, a blue/green update started a new
group) are picked up as they appear. With several streams each line is labelled
`[variant/instance/hostname]`.

On a terminal, control characters other than tab and newline are shown as visible escapes
(`client/terminal.py`): the bytes are the container's, and a terminal would obey them. `--raw`
prints them as they are; so does any output that is not a terminal (a pipe, a file), where the
bytes are data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TextIO

from polyhost.client.connection import Connection, ServerError, endpoint_path
from polyhost.client.terminal import visible

ROUTE = "/polyhost/endpoints"
PAGE_BYTES = 1024 * 1024


class StreamPrinter:
    """Writes log text as UTF-8 bytes; when `labelled`, whole lines each prefixed by stream;
    when `escape`, control characters shown as visible escapes (for a terminal)."""

    def __init__(self, out: BinaryIO, labelled: bool = False, escape: bool = False) -> None:
        self.out = out
        self.labelled = labelled
        self.escape = escape
        self._partial: dict[str, str] = {}

    def write(self, stream: str, text: str) -> None:
        if not text:
            return
        if self.escape:
            stream, text = visible(stream), visible(text)
        if not self.labelled:
            self.out.write(text.encode("utf-8"))
            self.out.flush()
            return
        text = self._partial.pop(stream, "") + text
        lines = text.split("\n")
        if lines[-1]:
            self._partial[stream] = lines[-1]
        body = "".join(f"[{stream}] {line}\n" for line in lines[:-1])
        if body:
            self.out.write(body.encode("utf-8"))
            self.out.flush()

    def finish(self) -> None:
        """Print what is left of unfinished lines (the command is ending)."""
        for stream, rest in self._partial.items():
            self.out.write(f"[{stream}] {rest}\n".encode())
        self._partial.clear()
        self.out.flush()


@dataclass
class LogReader:
    """Prints an endpoint's logs through `fetch(params) -> streams`, remembering offsets."""

    fetch: Callable[[dict[str, str | int]], list[dict[str, Any]]]
    printer: StreamPrinter
    container: str | None = None
    offsets: dict[str, int] = field(default_factory=dict)

    def _params(self, **extra: str | int) -> dict[str, str | int]:
        params: dict[str, str | int] = dict(extra)
        if self.container is not None:
            params["container"] = self.container
        return params

    def _emit(self, stream: dict[str, Any]) -> None:
        self.printer.write(str(stream["name"]), str(stream["text"]))
        self.offsets[str(stream["name"])] = int(stream["next_offset"])

    def _drain(self, name: str, size: int) -> None:
        """Read `name` from its remembered offset up to at least `size` bytes."""
        offset = self.offsets.get(name, 0)
        while offset < size:
            try:
                streams = self.fetch(self._params(stream=name, offset=offset, limit=PAGE_BYTES))
            except ServerError as error:
                if error.status == 404:  # the stream went away meanwhile (group replaced)
                    return
                raise
            if not streams:
                return
            self._emit(streams[0])
            if self.offsets[name] <= offset:  # no progress: wait for the writer
                return
            offset = self.offsets[name]

    def start(self, tail: int | None) -> None:
        """Print what is there now: the last `tail` lines of each stream, or everything."""
        if tail is not None:
            params = self._params(tail=tail, limit=PAGE_BYTES)
        else:
            params = self._params(offset=0, limit=PAGE_BYTES)
        streams = self.fetch(params)
        self.printer.labelled = self.printer.labelled or len(streams) > 1
        for stream in streams:
            self._emit(stream)
            if tail is None:
                self._drain(str(stream["name"]), int(stream["size"]))

    def poll(self) -> bool:
        """Print whatever was written since the last call; False once the endpoint is gone."""
        try:
            streams = self.fetch(self._params(limit=0))
        except ServerError as error:
            if error.status == 404:
                return False
            raise
        for stream in streams:
            name, size = str(stream["name"]), int(stream["size"])
            if name not in self.offsets:
                self.printer.labelled = self.printer.labelled or bool(self.offsets)
                self.offsets[name] = 0
            if size < self.offsets[name]:  # the file was replaced: start again
                self.offsets[name] = 0
            if size > self.offsets[name]:
                self._drain(name, size)
        return True


def logs_command(
    connection: Connection,
    endpoint: str,
    out: BinaryIO,
    err: TextIO,
    container: str | None = None,
    tail: int | None = None,
    follow: bool = False,
    interval_s: float = 0.5,
    raw: bool = False,
) -> None:
    """Print the logs; with `follow`, until Ctrl-C or until the endpoint is deleted.

    Control characters are escaped when `out` is a terminal, unless `raw`."""
    path = endpoint_path(ROUTE, endpoint, "logs")

    def fetch(params: dict[str, str | int]) -> list[dict[str, Any]]:
        return list(connection.get_json(path, params).get("streams") or [])

    printer = StreamPrinter(out, escape=not raw and out.isatty())
    reader = LogReader(fetch, printer, container)
    try:
        reader.start(tail)
        while follow:
            time.sleep(interval_s)
            if not reader.poll():
                printer.finish()
                print(f"endpoint {endpoint} is gone; stopped following", file=err)
                return
    except KeyboardInterrupt:
        pass
    finally:
        printer.finish()
