"""Hostile HTTP clients over raw sockets: what an attacker or a broken client sends.

Each helper speaks to a real server on a loopback port and reports what came back and how much
the client managed to send, so a test can state the bound it holds: an answer instead of a hang,
a closed connection instead of an open one, bytes refused instead of buffered. No helper asserts
anything itself; none waits without a deadline.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import psutil

CHUNK = 64 * 1024


@dataclass
class Answer:
    """What the server sent on one connection, and whether it then closed it."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    closed: bool = False  # the server ended the connection (FIN or reset)
    sent: int = 0  # bytes the client got into its socket before it stopped
    raw: bytes = b""

    def json(self) -> dict[str, object]:
        decoded = json.loads(self.body)
        assert isinstance(decoded, dict)
        return decoded


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def parse(raw: bytes) -> tuple[int | None, dict[str, str], bytes]:
    """Status, headers and (Content-Length framed) body of the first response in `raw`."""
    head, separator, rest = raw.partition(b"\r\n\r\n")
    if not separator:
        return None, {}, b""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    return status, headers, rest[:length]


def read_to_close(sock: socket.socket, deadline_s: float = 10.0) -> tuple[bytes, bool]:
    """Everything the server sends until it closes (True) or the deadline passes (False)."""
    data = b""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            chunk = sock.recv(CHUNK)
        except TimeoutError:
            break
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def read_one(sock: socket.socket, deadline_s: float = 10.0) -> tuple[bytes, bool]:
    """One whole response (head and Content-Length body); True if the server closed early."""
    data = b""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        status, headers, body = parse(data)
        if status is not None and len(body) >= int(headers.get("content-length", "0")):
            return data, False
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            chunk = sock.recv(CHUNK)
        except TimeoutError:
            break
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def push(
    sock: socket.socket,
    stream: Iterator[bytes],
    pause_s: float = 0.0,
    give_up_s: float = 60.0,
) -> tuple[int, bool]:
    """Send `stream` piece by piece until it ends, the server answers or closes, the server
    stops taking bytes, or `give_up_s` passes.

    Returns (bytes sent, whether the server answered or closed first). Before each piece the
    socket is polled for `pause_s`, so a client learns of an early answer as a browser would.
    """
    sent = 0
    end = time.monotonic() + give_up_s
    for piece in stream:
        readable, _, _ = select.select([sock], [], [], pause_s)
        if readable:
            return sent, True
        if time.monotonic() > end:
            return sent, False
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            return sent, True
        except TimeoutError:
            return sent, False  # the server stopped reading and the buffers are full
        sent += len(piece)
    return sent, False


def send_and_read(port: int, request: bytes, deadline_s: float = 30.0) -> Answer:
    """Send a whole request and read one answer. A server that refuses early closes while the
    client still sends: the send then fails, and the answer is read from what arrived."""
    with connect(port, deadline_s) as sock:
        try:
            sock.sendall(request)
            sent = len(request)
        except (BrokenPipeError, ConnectionResetError):
            sent = -1  # cut short by the server
        return _finish(sock, sent, deadline_s)


def _finish(sock: socket.socket, sent: int, deadline_s: float = 10.0) -> Answer:
    raw, closed = read_one(sock, deadline_s)
    if not closed:
        rest, closed = read_to_close(sock, 3.0)
        raw += rest
    status, headers, body = parse(raw)
    return Answer(status, headers, body, closed, sent, raw)


# -- oversized heads -----------------------------------------------------------------------------


def huge_url(port: int, size: int) -> Answer:
    """`GET /aaaa…` with a URL of `size` bytes, sent in pieces until the server answers."""

    def pieces() -> Iterator[bytes]:
        yield b"GET /"
        for offset in range(0, size, CHUNK):
            yield b"a" * min(CHUNK, size - offset)
        yield b" HTTP/1.1\r\nHost: x\r\n\r\n"

    with connect(port) as sock:
        sent, _ = push(sock, pieces())
        return _finish(sock, sent)


def header_bomb(port: int, size: int) -> Answer:
    """One header whose value is `size` bytes, sent in pieces until the server answers."""

    def pieces() -> Iterator[bytes]:
        yield b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Bomb: "
        for offset in range(0, size, CHUNK):
            yield b"b" * min(CHUNK, size - offset)
        yield b"\r\n\r\n"

    with connect(port) as sock:
        sent, _ = push(sock, pieces())
        return _finish(sock, sent)


def many_headers(port: int, count: int, value_bytes: int = 10) -> Answer:
    """A request with `count` small headers (each `value_bytes` long)."""
    head = b"GET /ping HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: %s\r\n" % (i, b"v" * value_bytes) for i in range(count)
    )

    def pieces() -> Iterator[bytes]:
        for offset in range(0, len(head), CHUNK):
            yield head[offset : offset + CHUNK]
        yield b"\r\n"

    with connect(port) as sock:
        sent, _ = push(sock, pieces())
        return _finish(sock, sent)


# -- slow clients --------------------------------------------------------------------------------


def slowloris_head(port: int, every_s: float, give_up_s: float) -> tuple[Answer, float]:
    """A request head sent one byte every `every_s` seconds, never finished.

    Returns the answer and how long the server kept the connection open (at most `give_up_s`).
    """
    started = time.monotonic()
    with connect(port) as sock:
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sent, closed = push(sock, _forever(b"y"), pause_s=every_s, give_up_s=give_up_s)
        answer = _finish(sock, sent, 3.0) if closed else Answer(sent=sent)
        return answer, time.monotonic() - started


def _forever(piece: bytes) -> Iterator[bytes]:
    while True:
        yield piece


def slow_body(
    port: int, path: str, declared: int, every_s: float, give_up_s: float
) -> tuple[Answer, float]:
    """A whole head announcing `declared` body bytes, then one body byte every `every_s` s."""
    started = time.monotonic()
    with connect(port) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n"
            "X-Amz-Target: SageMaker.ListModels\r\n\r\n".encode()
        )
        sent, closed = push(sock, iter([b" "] * declared), pause_s=every_s, give_up_s=give_up_s)
        answer = _finish(sock, sent, 3.0) if closed else Answer(sent=sent)
        return answer, time.monotonic() - started


# -- many connections, many requests ----------------------------------------------------------


@contextlib.contextmanager
def connection_flood(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that send nothing, held open for the `with` block."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            try:
                sockets.append(connect(port, timeout=5))
            except OSError:
                break  # the backlog is full: the flood is as large as it gets
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def answers_on(sockets: list[socket.socket], deadline_s: float) -> list[Answer | None]:
    """What the server said on each flood connection before closing it within `deadline_s`
    (all watched at once); None for a connection the server still holds at the deadline."""
    found: dict[int, Answer] = {}
    pending = {sock.fileno(): sock for sock in sockets}
    end = time.monotonic() + deadline_s
    while pending and time.monotonic() < end:
        readable, _, _ = select.select(list(pending.values()), [], [], end - time.monotonic())
        for sock in readable:
            raw, closed = read_to_close(sock, 3.0)
            status, headers, body = parse(raw)
            found[sock.fileno()] = Answer(status, headers, body, closed, 0, raw)
            del pending[sock.fileno()]
    return [found.get(sock.fileno()) for sock in sockets]


def pipelining_flood(port: int, give_up_s: float) -> tuple[int, bool]:
    """Pipeline GET /ping requests as fast as the server takes them, never reading an answer.

    The answers pile up until the server's write buffer is full; then the server must stop
    reading (back-pressure) and, since this client never reads, drop it. Returns (requests
    sent before the server stopped taking them, whether it dropped the connection within
    `give_up_s`).
    """
    one = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.settimeout(0.5)
    sock.connect(("127.0.0.1", port))
    sent = 0
    started = time.monotonic()
    with sock:
        while time.monotonic() - started < give_up_s:
            try:
                sock.sendall(one * 64)
            except TimeoutError:
                break  # the server stopped reading: back-pressure reached the client
            except (BrokenPipeError, ConnectionResetError):
                return sent, True
            sent += 64
        while time.monotonic() - started < give_up_s:
            try:
                sock.send(one)
            except TimeoutError:
                continue  # still open, still not reading
            except (BrokenPipeError, ConnectionResetError):
                return sent, True
            time.sleep(0.1)
        return sent, False


def smuggle(port: int, request: bytes) -> Answer:
    """Send one raw request (e.g. Content-Length and Transfer-Encoding both), read to close."""
    with connect(port) as sock:
        sock.sendall(request)
        raw, closed = read_to_close(sock, 10.0)
        status, headers, body = parse(raw)
        return Answer(status, headers, body, closed, len(request), raw)


SMUGGLING = {
    "CL then TE": (
        b"POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n"
        b"\r\n0\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    ),
    "TE then CL": (
        b"POST /ping HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n"
        b"\r\n0\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    ),
    "two Content-Lengths": (
        b"POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 38\r\n\r\n"
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    ),
    "obfuscated TE": (
        b"POST /ping HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"
        b"0\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    ),
    "TE with space before colon": (
        b"POST /ping HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n"
        b"0\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
    ),
}

INVALID_CHUNK_SIZES = {
    "not hex": b"zz",
    "negative": b"-1",
    "overflow": b"f" * 20,
    "space before extension": b"4 ;",
}


def invalid_chunk(port: int, size_token: bytes) -> Answer:
    """A chunked body whose first chunk size line is `size_token`."""
    return smuggle(
        port,
        b"POST /ping HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + size_token
        + b"\r\nabcd\r\n0\r\n\r\n",
    )


# -- the bystander and the server's resources ---------------------------------------------------


def ping(port: int, timeout: float = 10.0) -> int | None:
    """Status of GET /ping on a fresh connection (Connection: close), None if it failed."""
    try:
        with connect(port, timeout) as sock:
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            raw, _ = read_to_close(sock, timeout)
    except OSError:
        return None
    return parse(raw)[0]


class Bystander:
    """A well-behaved client pinging in the background while an attack runs.

    `statuses` collects every answer (None for a failed attempt), so a test can say that
    others were served throughout, not only before and after.
    """

    def __init__(self, port: int, every_s: float = 0.1) -> None:
        self.port = port
        self.every_s = every_s
        self.statuses: list[int | None] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.statuses.append(ping(self.port, timeout=10.0))
            self._stop.wait(self.every_s)

    def __enter__(self) -> Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)


def open_descriptors(pid: int) -> int:
    return psutil.Process(pid).num_fds()


def settle_descriptors(pid: int, baseline: int, deadline_s: float = 15.0) -> int:
    """Wait (up to the deadline) until the process holds no more descriptors than `baseline`;
    returns the last count seen."""
    end = time.monotonic() + deadline_s
    count = open_descriptors(pid)
    while count > baseline and time.monotonic() < end:
        time.sleep(0.1)
        count = open_descriptors(pid)
    return count
