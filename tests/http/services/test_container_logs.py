"""The logs route, served by a real uvicorn on a loopback port, over real log files."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from polyhost.http.app import PolyhostApp
from polyhost.http.aws.json_protocol import AwsJsonAdapter
from polyhost.http.services.container_logs import MAX_LIMIT, LogsRoute
from polyhost.logs.streams import LogStream
from tests.support.server import free_port


class LogServer:
    """PolyhostApp with only the logs route, on a uvicorn thread; `streams` is editable."""

    def __init__(self, streams: dict[str, list[LogStream]]) -> None:
        self.streams = streams
        app = PolyhostApp(
            AwsJsonAdapter.sagemaker(lambda operation, params: {}, max_body_bytes=1024),
            routes={"/polyhost/endpoints": LogsRoute(lambda name: self.streams.get(name, []))},
            access_log_enabled=False,
        )
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LogServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def request(self, path: str, method: str = "GET") -> tuple[int, dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}{path}"
        request = urllib.request.Request(url, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def logs(self, endpoint: str, query: str = "") -> list[dict[str, Any]]:
        status, body = self.request(f"/polyhost/endpoints/{endpoint}/logs{query}")
        assert status == 200, body
        streams: list[dict[str, Any]] = body["streams"]
        return streams


def stream(tmp: Path, hostname: str, instance: str = "i-1", variant: str = "AllTraffic") -> Any:
    path = tmp / f"{variant}-{instance}-{hostname}.log"
    return LogStream("ep", variant, instance, hostname, path)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LogStream]:
    tmp = tmp_path_factory.mktemp("logs")
    made = {
        "a1": stream(tmp, "alpha", "i-1"),
        "a2": stream(tmp, "alpha", "i-2"),
        "b1": stream(tmp, "beta", "i-1"),
    }
    made["a1"].path.write_text("alpha one\nalpha two\nalpha three\n")
    made["a2"].path.write_text("second replica\n")
    made["b1"].path.write_text("beta line\n")
    return made


@pytest.fixture(scope="module")
def server(files: dict[str, LogStream]) -> Iterator[LogServer]:
    with LogServer({"ep": list(files.values())}) as running:
        yield running


def test_all_streams_with_sizes_and_offsets(server: LogServer) -> None:
    streams = server.logs("ep")
    assert [s["name"] for s in streams] == [
        "AllTraffic/i-1/alpha",
        "AllTraffic/i-2/alpha",
        "AllTraffic/i-1/beta",
    ]
    first = streams[0]
    assert first["hostname"] == "alpha" and first["variant"] == "AllTraffic"
    assert first["instance_id"] == "i-1"
    assert first["text"] == "alpha one\nalpha two\nalpha three\n"
    assert first["offset"] == 0 and first["next_offset"] == first["size"] == len(first["text"])


def test_container_and_stream_filters(server: LogServer) -> None:
    alpha = server.logs("ep", "?container=alpha")
    assert {s["name"] for s in alpha} == {"AllTraffic/i-1/alpha", "AllTraffic/i-2/alpha"}
    one = server.logs("ep", "?stream=AllTraffic/i-2/alpha")
    assert [s["text"] for s in one] == ["second replica\n"]
    both = server.logs("ep", "?container=beta&stream=AllTraffic%2Fi-1%2Fbeta")
    assert [s["text"] for s in both] == ["beta line\n"]


def test_offset_limit_and_following_appends(server: LogServer, files: dict[str, LogStream]) -> None:
    path = files["b1"].path
    (chunk,) = server.logs("ep", "?container=beta&offset=2&limit=3")
    assert chunk["text"] == "ta " and chunk["offset"] == 2 and chunk["next_offset"] == 5
    with open(path, "a") as handle:
        handle.write("appended\n")
    (sizes,) = server.logs("ep", "?container=beta&limit=0")
    assert sizes["text"] == "" and sizes["size"] == len("beta line\nappended\n")
    (rest,) = server.logs("ep", "?container=beta&offset=10")
    assert rest["text"] == "appended\n" and rest["next_offset"] == rest["size"]


def test_negative_offset_and_offset_past_the_end(server: LogServer) -> None:
    (end,) = server.logs("ep", "?container=alpha&stream=AllTraffic/i-1/alpha&offset=-6")
    assert end["text"] == "three\n"
    (past,) = server.logs("ep", "?stream=AllTraffic/i-2/alpha&offset=9999")
    assert past["text"] == "" and past["offset"] == past["size"] == past["next_offset"]


def test_tail_lines(server: LogServer) -> None:
    (two,) = server.logs("ep", "?stream=AllTraffic/i-1/alpha&tail=2")
    assert two["text"] == "alpha two\nalpha three\n"
    assert two["next_offset"] == two["size"]
    assert two["offset"] == len("alpha one\n")
    (none,) = server.logs("ep", "?stream=AllTraffic/i-1/alpha&tail=0")
    assert none["text"] == "" and none["offset"] == none["size"]
    (many,) = server.logs("ep", "?stream=AllTraffic/i-1/alpha&tail=50")
    assert many["offset"] == 0


def test_large_log_is_capped_and_paged(tmp_path: Path, server: LogServer) -> None:
    big = stream(tmp_path, "big")
    line = ("x" * 99 + "\n").encode()
    big.path.write_bytes(line * 15_000)  # 1.5 MB: above the per-request cap
    server.streams["big"] = [big]
    try:
        (first,) = server.logs("big", "?limit=5000000")
        assert first["next_offset"] == MAX_LIMIT and first["size"] == 1_500_000
        (second,) = server.logs("big", f"?offset={first['next_offset']}&limit=5000000")
        assert second["next_offset"] == second["size"]
        assert len(first["text"]) + len(second["text"]) == 1_500_000
        (last,) = server.logs("big", "?tail=3")
        assert last["text"] == (line * 3).decode()
    finally:
        del server.streams["big"]


def test_missing_file_is_an_empty_log(tmp_path: Path, server: LogServer) -> None:
    server.streams["fresh"] = [stream(tmp_path, "not-started")]
    try:
        (empty,) = server.logs("fresh")
        assert empty == {
            "name": "AllTraffic/i-1/not-started",
            "hostname": "not-started",
            "variant": "AllTraffic",
            "instance_id": "i-1",
            "size": 0,
            "offset": 0,
            "next_offset": 0,
            "text": "",
        }
    finally:
        del server.streams["fresh"]


@pytest.mark.parametrize(
    ("path", "status", "code", "fragment"),
    [
        ("/polyhost/endpoints/nope/logs", 404, "ValidationException", '"nope"'),
        ("/polyhost/endpoints/ep/logs?container=gamma", 404, "ValidationException", "alpha, beta"),
        ("/polyhost/endpoints/ep/logs?stream=x/y/z", 404, "ValidationException", "i-2/alpha"),
        ("/polyhost/endpoints/ep/logs?offset=abc", 400, "ValidationException", "integer"),
        ("/polyhost/endpoints/ep/logs?limit=-1", 400, "ValidationException", ">= 0"),
        ("/polyhost/endpoints/ep/logs?tail=-3", 400, "ValidationException", ">= 0"),
        ("/polyhost/endpoints/ep/logs?lines=3", 400, "ValidationException", "known: container"),
        ("/polyhost/endpoints/ep/logs?tail=1&tail=2", 400, "ValidationException", "once"),
        ("/polyhost/endpoints/ep/other", 404, "UnknownOperationException", "/logs"),
        ("/polyhost/endpoints/ep", 404, "UnknownOperationException", "/logs"),
        ("/polyhost/endpoints//logs", 404, "UnknownOperationException", "/logs"),
    ],
)
def test_errors_say_what_to_fix(
    server: LogServer, path: str, status: int, code: str, fragment: str
) -> None:
    got, body = server.request(path)
    assert got == status
    assert body["__type"] == code
    assert fragment in body["message"]


def test_only_get(server: LogServer) -> None:
    status, body = server.request("/polyhost/endpoints/ep/logs", method="POST")
    assert status == 405 and "GET" in body["message"]
