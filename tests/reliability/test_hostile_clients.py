"""Hostile clients against a real server: each test names the bound the listener holds.

Every attack runs while a well-behaved client pings the server in the background; each test
checks that the bystander was answered throughout, that the attacker got a clear answer (or a
clean close), and that the server's open descriptors come back to where they were. The server
runs with short deadlines (conftest.py) so that every attack ends within a few seconds; the
deadlines the tests wait on are ten times longer, to stay robust on a loaded machine.
"""

from __future__ import annotations

import pytest

from tests.reliability.conftest import BODY_TIMEOUT_S, HEADER_TIMEOUT_S, MAX_CONNECTIONS
from tests.reliability.hostile_client import (
    INVALID_CHUNK_SIZES,
    SMUGGLING,
    Answer,
    Bystander,
    answers_on,
    connection_flood,
    header_bomb,
    huge_url,
    invalid_chunk,
    many_headers,
    open_descriptors,
    ping,
    pipelining_flood,
    settle_descriptors,
    slow_body,
    slowloris_head,
    smuggle,
)
from tests.support.server import PolyhostProcess

MiB = 1024 * 1024
# What a client can push into the kernel's buffers (its send buffer, the server's receive
# buffer) before the server's close reaches it: far below any attack's size.
KERNEL_SLACK = 16 * MiB


def served_throughout(bystander: Bystander, allowed: tuple[int, ...] = (200,)) -> None:
    assert bystander.statuses, "the bystander never got to ask"
    assert set(bystander.statuses) <= set(allowed), bystander.statuses


def back_to_baseline(server: PolyhostProcess, pid: int, baseline: int) -> None:
    assert settle_descriptors(pid, baseline) <= baseline
    assert ping(server.port) == 200


def refused_with(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, answer.raw[:300]
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["__type"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert answer.closed, "the server must close the connection after refusing"


def test_slowloris_head_is_cut_off_at_the_header_timeout(
    hostile_server: PolyhostProcess, server_pid: int, baseline: int
) -> None:
    """Time: a head trickled a byte every 0.2 s is answered 408 and closed once the header
    timeout (2 s) has passed, not kept alive by its trickle (it once outlived 40 s)."""
    with Bystander(hostile_server.port) as bystander:
        answer, _ = slowloris_head(
            hostile_server.port, every_s=0.2, give_up_s=10 * HEADER_TIMEOUT_S
        )
    refused_with(answer, 408, "RequestTimeout")
    assert "--header-timeout" in str(answer.json()["message"])
    served_throughout(bystander)
    back_to_baseline(hostile_server, server_pid, baseline)


def test_slow_body_is_cut_off_at_the_body_timeout(
    hostile_server: PolyhostProcess, server_pid: int, baseline: int
) -> None:
    """Time: a body announced as 10,000 bytes and trickled a byte every 0.2 s is answered 408
    and closed once the body timeout (2 s) has passed."""
    with Bystander(hostile_server.port) as bystander:
        answer, _ = slow_body(
            hostile_server.port, "/", 10_000, every_s=0.2, give_up_s=10 * BODY_TIMEOUT_S
        )
    refused_with(answer, 408, "RequestTimeout")
    assert "--body-timeout" in str(answer.json()["message"])
    served_throughout(bystander)
    back_to_baseline(hostile_server, server_pid, baseline)


def test_header_bomb_is_refused_at_the_head_cap(
    hostile_server: PolyhostProcess, server_pid: int, baseline: int
) -> None:
    """Bytes: a 100 MiB header is answered 431 once the head passes 64 KiB; the server closes
    without reading on, so the client cannot even get the rest into the kernel's buffers."""
    with Bystander(hostile_server.port) as bystander:
        answer = header_bomb(hostile_server.port, 100 * MiB)
    refused_with(answer, 431, "RequestHeaderFieldsTooLarge")
    assert answer.sent < KERNEL_SLACK
    served_throughout(bystander)
    back_to_baseline(hostile_server, server_pid, baseline)


def test_huge_url_is_refused_at_the_request_line_cap(
    hostile_server: PolyhostProcess, server_pid: int, baseline: int
) -> None:
    """Bytes: a 20 MiB URL is answered 414 once it passes 8 KiB, in a short answer (it once
    came back in a 20 MB 404), and the rest is never read."""
    with Bystander(hostile_server.port) as bystander:
        answer = huge_url(hostile_server.port, 20 * MiB)
    refused_with(answer, 414, "RequestURITooLong")
    assert len(answer.raw) < 1024
    assert answer.sent < KERNEL_SLACK
    served_throughout(bystander)
    back_to_baseline(hostile_server, server_pid, baseline)


def test_too_many_headers_are_refused(
    hostile_server: PolyhostProcess, server_pid: int, baseline: int
) -> None:
    """Count: 500 small headers are answered 431 at the 101st."""
    answer = many_headers(hostile_server.port, 500)
    refused_with(answer, 431, "RequestHeaderFieldsTooLarge")
    assert "100 headers" in str(answer.json()["message"])
    back_to_baseline(hostile_server, server_pid, baseline)


def test_connection_flood_is_capped_and_refusals_are_logged(
    hostile_server: PolyhostProcess, server_pid: int, baseline: int
) -> None:
    """Descriptors: of 3x the connection cap (64) opened at once, the server holds at most the
    cap; the rest get a 503 and are closed at once, and a log line counts them. The held ones
    are closed at the header timeout, and every bystander gets an HTTP answer (200, or a clean
    503 while the server is full), never a reset."""
    with (
        Bystander(hostile_server.port, every_s=0.05) as bystander,
        connection_flood(hostile_server.port, 3 * MAX_CONNECTIONS) as sockets,
    ):
        assert len(sockets) == 3 * MAX_CONNECTIONS
        answers = answers_on(sockets[MAX_CONNECTIONS:], deadline_s=5.0)
        turned_away = [a for a in answers if a is not None and a.status == 503]
        assert len(turned_away) >= MAX_CONNECTIONS, answers
        refused_with(turned_away[0], 503, "ServiceUnavailable")
        assert turned_away[0].headers["retry-after"] == "1"
        assert open_descriptors(server_pid) <= baseline + MAX_CONNECTIONS + 8
        kept = answers_on(sockets[:MAX_CONNECTIONS], deadline_s=10 * HEADER_TIMEOUT_S)
        assert all(a is not None and a.closed for a in kept), kept
    served_throughout(bystander, allowed=(200, 503))
    assert "refused" in hostile_server.log() and "--max-connections" in hostile_server.log()
    back_to_baseline(hostile_server, server_pid, baseline)


def test_pipelining_flood_without_reading_is_bounded_and_dropped(
    hostile_server: PolyhostProcess, server_pid: int, baseline: int
) -> None:
    """Bytes and time: a client pipelining requests without reading the answers is stopped by
    back-pressure (the server stops reading once its answers pile up, so the client's sends
    block) and dropped once it has not read for the body timeout (2 s)."""
    with Bystander(hostile_server.port) as bystander:
        sent, dropped = pipelining_flood(hostile_server.port, give_up_s=10 * BODY_TIMEOUT_S)
    assert sent > 0
    assert dropped, "a client that never reads must not hold its connection forever"
    served_throughout(bystander)
    back_to_baseline(hostile_server, server_pid, baseline)


@pytest.mark.parametrize("request_bytes", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_request_smuggling_is_refused(
    hostile_server: PolyhostProcess, server_pid: int, baseline: int, request_bytes: bytes
) -> None:
    """Framing: a request whose length is ambiguous (Content-Length and Transfer-Encoding, two
    lengths, an obfuscated encoding) is answered 400 and the connection closed, so the request
    hidden in its body is never served."""
    answer = smuggle(hostile_server.port, request_bytes)
    refused_with(answer, 400, "BadRequest")
    assert answer.raw.count(b"HTTP/1.1 ") == 1, answer.raw
    back_to_baseline(hostile_server, server_pid, baseline)


@pytest.mark.parametrize("size", INVALID_CHUNK_SIZES.values(), ids=INVALID_CHUNK_SIZES.keys())
def test_invalid_chunk_sizes_are_refused(
    hostile_server: PolyhostProcess, server_pid: int, baseline: int, size: bytes
) -> None:
    """Framing: a chunk size that is not plain hex, or overflows, is answered 400 and closed."""
    answer = invalid_chunk(hostile_server.port, size)
    refused_with(answer, 400, "BadRequest")
    assert "Malformed HTTP request" in str(answer.json()["message"])
    back_to_baseline(hostile_server, server_pid, baseline)


def test_nothing_leaked_a_traceback(hostile_server: PolyhostProcess) -> None:
    """After every attack above: the server still answers and its log holds no traceback."""
    assert ping(hostile_server.port) == 200
    assert "Traceback" not in hostile_server.log()
