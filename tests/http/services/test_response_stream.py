"""InvokeEndpointWithResponseStream end to end: a real server, boto3's own client and parser.

The container (tests/support/containers/streamer.py) streams what each request's body asks for:
parts with delays between them, then an end, a dropped connection or a stall. What is checked
is what a boto3 user sees: parts as they are written (not once the answer is complete), the
response's metadata, InvokeEndpoint's errors before the first byte, and a ModelStreamError
raised from the stream's iterator, never a silently shortened stream, after it.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any, cast

import pytest
from botocore.eventstream import EventStreamBuffer
from botocore.exceptions import ClientError, EventStreamError

from tests.support.endpoints import create_config, create_model, echo_container, wait_status
from tests.support.errors import client_error
from tests.support.server import STREAM_IMAGE, PolyhostProcess, ServerFactory

ENDPOINT = "streams"
PIPELINE = "stream-pipeline"
DIRECT = "stream-direct"


def streamer(hostname: str | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"Image": STREAM_IMAGE}
    if hostname is not None:
        container["ContainerHostname"] = hostname
    return container


def deploy(sagemaker: Any, name: str, containers: list[dict[str, Any]], mode: str | None) -> None:
    create_model(sagemaker, name, containers, mode)
    create_config(sagemaker, name, [("AllTraffic", name, 1, 1.0)])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    proc = start_server(
        "--stream-idle-timeout", "0.5", "--invocation-timeout", "2", "--max-inflight", "3"
    )
    sagemaker = proc.sagemaker()
    deploy(sagemaker, ENDPOINT, [streamer()], None)
    deploy(sagemaker, PIPELINE, [echo_container("pre"), streamer("gen")], "Serial")
    deploy(sagemaker, DIRECT, [streamer("one"), streamer("two")], "Direct")
    for name in (ENDPOINT, PIPELINE, DIRECT):
        assert wait_status(sagemaker, name)["EndpointStatus"] == "InService"
    return proc


def start(runtime: Any, plan: dict[str, Any], endpoint: str = ENDPOINT, **kwargs: Any) -> Any:
    return runtime.invoke_endpoint_with_response_stream(
        EndpointName=endpoint, Body=json.dumps(plan).encode(), **kwargs
    )


def parts(answer: Any) -> Iterator[bytes]:
    for event in answer["Body"]:
        assert list(event) == ["PayloadPart"]
        yield event["PayloadPart"]["Bytes"]


def test_parts_arrive_as_the_container_writes_them(runtime: Any) -> None:
    began = time.monotonic()
    answer = start(runtime, {"parts": ["one", "two", "three"], "delay": 0.3})
    seen = []
    for part in parts(answer):
        seen.append((part, time.monotonic() - began))
    assert [part for part, _ in seen] == [b"one", b"two", b"three"]
    # Each part is delivered when written, 0.3 s apart, not all together at the end.
    assert seen[0][1] < 0.55
    assert seen[2][1] - seen[0][1] > 0.45
    assert answer["ContentType"] == "text/plain"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    headers = answer["ResponseMetadata"]["HTTPHeaders"]
    assert headers["content-type"] == "application/vnd.amazon.eventstream"
    assert "x-amzn-requestid" in headers


def test_the_accept_and_attributes_reach_the_container_and_come_back(runtime: Any) -> None:
    answer = start(
        runtime,
        {"parts": ["a"], "content_type": "application/jsonlines"},
        Accept="application/jsonlines",
        CustomAttributes="trace=7",
        ContentType="application/json",
        InferenceId="inference-1",
    )
    assert list(parts(answer)) == [b"a"]
    assert answer["CustomAttributes"] == "trace=7;accept=application/jsonlines"
    assert answer["ContentType"] == "application/jsonlines"


def test_many_small_parts_and_large_ones_arrive_whole_and_in_order(runtime: Any) -> None:
    answer = start(runtime, {"count": 200, "size": 100})
    assert b"".join(parts(answer)) == b"x" * 20_000
    answer = start(runtime, {"count": 8, "size": 1 << 20})
    assert b"".join(parts(answer)) == b"x" * (8 << 20)


def test_an_empty_answer_is_a_stream_without_parts(runtime: Any) -> None:
    assert list(parts(start(runtime, {"parts": []}))) == []


def test_a_container_dropping_mid_stream_ends_it_with_stream_broken(runtime: Any) -> None:
    answer = start(runtime, {"parts": ["a", "b"], "then": "drop"})
    got = []
    with pytest.raises(EventStreamError) as excinfo:
        for part in parts(answer):
            got.append(part)
    assert got == [b"a", b"b"]
    error = excinfo.value.response["Error"]
    assert error["Code"] == "ModelStreamError"
    assert "closed the connection before its answer was complete" in error["Message"]
    assert "polyhost logs streams" in error["Message"]


def test_a_stalled_container_ends_the_stream_with_time_exceeded(runtime: Any) -> None:
    began = time.monotonic()
    answer = start(runtime, {"parts": ["a"], "then": "stall"})
    with pytest.raises(EventStreamError) as excinfo:
        list(parts(answer))
    assert time.monotonic() - began < 3  # the idle gap (0.5 s), not the invocation timeout
    error = excinfo.value.response["Error"]
    assert error["Code"] == "ModelStreamError"
    assert "--stream-idle-timeout" in error["Message"]


def test_a_slow_but_steady_stream_is_bounded_by_the_invocation_timeout(
    runtime: Any, server: PolyhostProcess
) -> None:
    # Parts every 0.3 s keep within the idle gap; the whole stream passes the 2 s timeout.
    answer = start(runtime, {"count": 40, "size": 10, "delay": 0.3})
    got = []
    with pytest.raises(EventStreamError) as excinfo:
        for part in parts(answer):
            got.append(part)
    assert 3 <= len(got) < 40
    assert "within 2 s (--invocation-timeout)" in excinfo.value.response["Error"]["Message"]


def test_the_raw_events_say_which_error_code(server: PolyhostProcess) -> None:
    """botocore keeps only Code and Message; the event's JSON has SageMaker's ErrorCode."""
    events = raw_events(server, {"parts": ["a"], "then": "drop"})
    assert [e.headers[":message-type"] for e in events] == ["event", "exception"]
    assert events[0].headers[":event-type"] == "PayloadPart"
    assert events[1].headers[":exception-type"] == "ModelStreamError"
    assert json.loads(events[1].payload)["ErrorCode"] == "StreamBroken"
    events = raw_events(server, {"parts": ["a"], "then": "stall"})
    assert json.loads(events[-1].payload)["ErrorCode"] == "ModelInvocationTimeExceeded"


def raw_events(server: PolyhostProcess, plan: dict[str, Any]) -> list[Any]:
    request = urllib.request.Request(
        f"{server.url}/endpoints/{ENDPOINT}/invocations-response-stream",
        data=json.dumps(plan).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        data = response.read()
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return list(buffer)


@pytest.mark.parametrize(
    ("plan", "fragment"),
    [
        ({"status": 500, "parts": ["boom"]}, "Received server error (500) from "),
        ({"status": 400, "parts": ["bad input"]}, "Received client error (400) from "),
        ({"parts": [], "then": "drop"}, "closed the connection without answering"),
        ({"parts": [], "then": "stall"}, "no part of the answer came for 0.5 s"),
    ],
)
def test_a_failure_before_the_first_byte_is_invoke_endpoints_error(
    runtime: Any, plan: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ClientError) as excinfo:
        list(parts(start(runtime, plan)))
    code, status, message = client_error(excinfo)
    assert (code, status) == ("ModelError", 424)
    assert fragment in message


def test_session_ids_and_inference_components_are_refused(runtime: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        start(runtime, {"parts": ["a"]}, SessionId="abc")
    code, status, message = client_error(excinfo)
    assert (code, status) == ("ValidationError", 400)
    assert "SessionId is not supported" in message
    with pytest.raises(ClientError) as excinfo:
        start(runtime, {"parts": ["a"]}, InferenceComponentName="ic")
    code, status, message = client_error(excinfo)
    assert (code, status) == ("ValidationError", 400)
    assert "inference components" in message


def test_an_unknown_endpoint_or_variant_is_a_validation_error(runtime: Any) -> None:
    with pytest.raises(ClientError) as excinfo:
        start(runtime, {}, endpoint="nope")
    assert client_error(excinfo)[:2] == ("ValidationError", 400)
    assert "Endpoint nope of account" in client_error(excinfo).message
    with pytest.raises(ClientError) as excinfo:
        start(runtime, {}, TargetVariant="Other")
    assert "Variant Other not found" in client_error(excinfo).message


def test_a_pipeline_streams_its_last_container(runtime: Any) -> None:
    answer = start(runtime, {"parts": ["x"]}, endpoint=PIPELINE)
    # The echo container's answer ("pre:<body>") is not JSON: the streamer sends it back whole.
    assert b"".join(parts(answer)) == b'pre:{"parts": ["x"]}'


def test_direct_mode_streams_the_container_named(runtime: Any) -> None:
    answer = start(
        runtime,
        {"parts": ["hi"]},
        endpoint=DIRECT,
        TargetContainerHostname="two",
        CustomAttributes="c",
    )
    assert list(parts(answer)) == [b"hi"]
    with pytest.raises(ClientError) as excinfo:
        start(runtime, {"parts": ["hi"]}, endpoint=DIRECT)
    assert "uses Direct invocation mode" in client_error(excinfo).message


def test_streams_count_against_max_inflight(runtime: Any, server: PolyhostProcess) -> None:
    stalled = [start(runtime, {"parts": ["a"], "delay": 0, "count": 0, "then": "stall"})]
    stalled += [start(runtime, {"parts": ["a"], "then": "stall"}) for _ in range(2)]
    with pytest.raises(ClientError) as excinfo:
        start(runtime, {"parts": ["a"]})
    code, status, message = client_error(excinfo)
    assert (code, status) == ("ServiceUnavailable", 503)
    assert "already has 3 requests in flight" in message
    for answer in stalled:
        answer["Body"].close()
    time.sleep(0.7)  # past the idle gap every stalled stream is over, its slot given back
    assert list(parts(start(runtime, {"parts": ["ok"]}))) == [b"ok"]


def test_a_client_that_leaves_frees_the_stream(server: PolyhostProcess, runtime: Any) -> None:
    for _ in range(5):  # more than --max-inflight: each left stream gave its slot back
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            body = json.dumps({"count": 1000, "size": 1 << 16, "delay": 0.001}).encode()
            sock.sendall(
                b"POST /endpoints/%s/invocations-response-stream HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (ENDPOINT.encode(), len(body), body)
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    time.sleep(0.3)
    assert list(parts(start(runtime, {"parts": ["after"]}))) == [b"after"]


def test_streams_are_counted_in_the_metrics(server: PolyhostProcess, runtime: Any) -> None:
    list(parts(start(runtime, {"parts": ["m"]})))
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    streams = [
        line for line in text.splitlines()
        if line.startswith("polyhost_invocation_streams_total{") and f'"{ENDPOINT}"' in line
    ]  # fmt: skip
    assert streams and float(streams[0].rsplit(" ", 1)[1]) >= 1
    assert "polyhost_time_to_first_byte_microseconds_bucket{" in text


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_slow_reader_does_not_grow_the_servers_memory(server: PolyhostProcess) -> None:
    assert server.process is not None
    pid = server.process.pid
    total = 100 * (1 << 20)
    body = json.dumps({"count": total // (1 << 16), "size": 1 << 16}).encode()
    before = rss_kib(pid)
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
        sock.sendall(
            b"POST /endpoints/%s/invocations-response-stream HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (ENDPOINT.encode(), len(body), body)
        )
        head = sock.recv(1 << 16)
        assert head.startswith(b"HTTP/1.1 200")
        time.sleep(1.5)  # not reading: the container, writing as fast as it can, is held back
        held = rss_kib(pid)
        # Read it all, slowly at first, and decode what came.
        buffer = EventStreamBuffer()
        data = head.split(b"\r\n\r\n", 1)[1]
        received = bytearray(data)
        peak = held
        sock.settimeout(10)
        reads = 0
        while not received.endswith(b"\r\n0\r\n\r\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            received += chunk
            reads += 1
            if reads % 200 == 0:
                peak = max(peak, rss_kib(pid))
    assert (held - before) < 24 * 1024, f"RSS grew {held - before} KiB with the reader paused"
    assert (peak - before) < 32 * 1024, f"RSS grew {peak - before} KiB while streaming"
    payload = 0
    for part in dechunk(bytes(received)):
        buffer.add_data(part)
        for event in buffer:
            assert cast(dict[str, Any], event.headers)[":event-type"] == "PayloadPart"
            payload += len(event.payload)
    assert payload == total


def dechunk(data: bytes) -> Iterator[bytes]:
    """The pieces of an HTTP/1.1 chunked body."""
    view = memoryview(data)
    at = 0
    while True:
        line_end = data.index(b"\r\n", at)
        size = int(data[at:line_end], 16)
        if size == 0:
            return
        yield bytes(view[line_end + 2 : line_end + 2 + size])
        at = line_end + 2 + size + 2


def test_invoke_endpoint_still_answers_whole_beside_streams(runtime: Any) -> None:
    done = threading.Event()

    def stream() -> None:
        list(parts(start(runtime, {"count": 5, "size": 10, "delay": 0.1})))
        done.set()

    thread = threading.Thread(target=stream)
    thread.start()
    answer = runtime.invoke_endpoint(EndpointName=ENDPOINT, Body=b'{"parts": ["whole"]}')
    assert answer["Body"].read() == b"whole"
    thread.join(5)
    assert done.is_set()
