"""The access log keeps every caller-chosen value short: no request can grow a log line.

A 5 MiB X-Amz-Target once made a 5 MB log line. The head caps now refuse values that large, so
these tests send the largest a head still allows (8 KiB URLs, 16 KiB headers) and check that the
line stays near the 200-character bound, and says how long the value was.
"""

from __future__ import annotations

import http.client
import re
import time

from tests.support.server import PolyhostProcess

LINE_BOUND = 600  # timestamp, level, client, method, status, time and three clipped values


def access_lines(server: PolyhostProcess, marker: str, deadline_s: float = 10.0) -> list[str]:
    """Access-log lines containing `marker`, waiting for the server to write them."""
    end = time.monotonic() + deadline_s
    while True:
        lines = [ln for ln in server.log().splitlines() if "polyhost.access" in ln]
        found = [ln for ln in lines if marker in ln]
        if found or time.monotonic() > end:
            return found


def request(server: PolyhostProcess, method: str, path: str, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, body=b"{}", headers=headers)
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def test_a_long_operation_name_is_clipped_in_the_access_log(server: PolyhostProcess) -> None:
    operation = "Clip" + "X" * 10_000
    status = request(server, "POST", "/", {"X-Amz-Target": f"SageMaker.{operation}"})
    assert status == 400
    (line,) = access_lines(server, "ClipXXX")
    assert len(line) < LINE_BOUND, len(line)
    assert f"…({len(operation)} chars)" in line


def test_a_long_path_is_clipped_in_the_access_log(server: PolyhostProcess) -> None:
    path = "/clip-path-" + "p" * 8000
    assert request(server, "GET", path, {}) == 404
    (line,) = access_lines(server, "/clip-path-")
    assert len(line) < LINE_BOUND, len(line)
    assert f"…({len(path)} chars)" in line


def test_a_long_endpoint_name_is_clipped_on_the_invocation_path(server: PolyhostProcess) -> None:
    name = "clip-endpoint-" + "e" * 8000
    status = request(server, "POST", f"/endpoints/{name}/invocations", {})
    assert status == 400  # no such endpoint
    lines = access_lines(server, "/endpoints/clip-endpoint-")
    assert lines and all(len(line) < LINE_BOUND for line in lines), [len(ln) for ln in lines]
    assert re.search(r"…\(\d+ chars\)", lines[0])
