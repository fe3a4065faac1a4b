"""The data capture writer process (`capture/process.py`) as the server runs it: started with
the first endpoint that captures, started again when it dies, gone when the server stops.

A real server and a real S3 (moto's server); the process is found among the server's children
by its command line."""

from __future__ import annotations

import signal
import socket
import time

import psutil

from tests.capture.test_data_capture import capture_config, deploy, metric, records
from tests.support.s3 import MotoS3, s3_server  # noqa: F401  (fixture)
from tests.support.server import PolyhostProcess, ServerFactory
from tests.support.waiting import eventually

MODULE = "polyhost.capture.process"


def writers(server: PolyhostProcess) -> list[psutil.Process]:
    assert server.process is not None
    found = []
    for child in psutil.Process(server.process.pid).children():
        try:
            if MODULE in child.cmdline():
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def invoke(server: PolyhostProcess, name: str, bodies: list[str]) -> None:
    runtime = server.runtime()
    for body in bodies:
        answer = runtime.invoke_endpoint(
            EndpointName=name, Body=body.encode(), ContentType="text/csv"
        )
        assert answer["Body"].read() == b"cap:" + body.encode()


def test_the_writer_process_lives_with_the_capture_and_comes_back_when_killed(
    start_server: ServerFactory,
    s3_server: MotoS3,  # noqa: F811
) -> None:
    bucket = s3_server.new_bucket("writer")
    own = start_server("--data-capture-flush-s", "0.5", name="writer", env=s3_server.env())
    # A server whose endpoints capture nothing runs no writer process.
    plain = deploy(own.sagemaker(), None)
    invoke(own, plain, ["x"])
    time.sleep(1.0)
    assert writers(own) == []

    name = deploy(own.sagemaker(), capture_config(f"s3://{bucket}/proc"))
    (first,) = eventually(lambda: writers(own), "the writer process to start")
    invoke(own, name, ["a", "b"])
    assert len(records(s3_server, bucket, f"proc/{name}", at_least=2)) == 2

    first.send_signal(signal.SIGKILL)
    invoke(own, name, ["c", "d"])  # never failed by the writer's death
    found = records(s3_server, bucket, f"proc/{name}", at_least=4)
    assert sorted(r["captureData"]["endpointInput"]["data"] for _, r in found) == list("abcd")
    (second,) = eventually(
        lambda: [w for w in writers(own) if w.pid != first.pid], "a writer started again"
    )
    assert not psutil.pid_exists(first.pid)  # reaped by the server
    assert "writer process" in own.log()
    eventually(
        lambda: metric(own, "polyhost_data_capture_records_total", name) == 4,
        "every record counted as written",
    )

    # SIGINT and SIGTERM are the server's to act on: the writer outlives neither signal
    # sent to it alone, and ends with the server once what is queued is written.
    second.send_signal(signal.SIGTERM)
    second.send_signal(signal.SIGINT)
    invoke(own, name, ["e"])
    assert own.stop() == 0
    assert not psutil.pid_exists(second.pid) or second.status() == psutil.STATUS_ZOMBIE
    found = records(s3_server, bucket, f"proc/{name}", at_least=5, timeout=0)
    assert sorted(r["captureData"]["endpointInput"]["data"] for _, r in found) == list("abcde")


def test_the_writer_process_ends_when_the_server_is_killed(
    start_server: ServerFactory,
    s3_server: MotoS3,  # noqa: F811
) -> None:
    """The server gone without a word (SIGKILL): the writer writes what it already holds,
    then ends rather than linger."""
    bucket = s3_server.new_bucket("orphan")
    own = start_server("--data-capture-flush-s", "0.3", name="orphan", env=s3_server.env())
    name = deploy(own.sagemaker(), capture_config(f"s3://{bucket}/orphan"))
    (writer,) = eventually(lambda: writers(own), "the writer process to start")
    invoke(own, name, ["a"])
    assert len(records(s3_server, bucket, f"orphan/{name}", at_least=1)) == 1
    own.kill9()
    writer.wait(20)  # it ends once the server's end of the socket is closed; raises if not


def test_what_a_dead_writer_held_is_counted_as_failed(
    start_server: ServerFactory,
    s3_server: MotoS3,  # noqa: F811
) -> None:
    """Killed while it holds a batch (here: waiting on an S3 that takes the connection and
    never answers), the rows it held are counted as failed, and never an invocation."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections are taken by the kernel, never answered
        env = {
            **s3_server.env(),
            "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{silent.getsockname()[1]}",
        }
        own = start_server("--data-capture-flush-s", "0.3", name="held", env=env)
        name = deploy(own.sagemaker(), capture_config("s3://silent-bucket/held"))
        (first,) = eventually(lambda: writers(own), "the writer process to start")
        invoke(own, name, ["a", "b", "c"])
        time.sleep(1.5)  # the batch is in the writer, waiting on S3
        assert metric(own, "polyhost_data_capture_failed_total", name) == 0
        first.send_signal(signal.SIGKILL)
        eventually(
            lambda: metric(own, "polyhost_data_capture_failed_total", name) == 3,
            "the rows the dead writer held to be counted as failed",
        )
        assert "writer process is gone" in own.log()
        invoke(own, name, ["d"])  # answered as ever
        own.stop()
