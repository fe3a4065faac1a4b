"""Scenario 18: asynchronous inference, a queue of 1,000 requests drained, and the queue's cost.

A model that takes `SERVICE_MS` per answer (bench/scenarios/async_container.py) is called two
ways at the same concurrency C, in the same run:
- directly: C client threads, each with one kept-alive connection, send 1,000 requests in all
  to the container's `POST /invocations`;
- through polyhost's queue: an endpoint with AsyncInferenceConfig and
  MaxConcurrentInvocationsPerInstance C on one instance, its input in S3 (moto's server, one
  object read by every request) and its answers written there. 1,000 InvokeEndpointAsync calls
  are queued while the model holds its first C answers (a file the container waits for); the
  drain is timed from that file's creation until the admin API reports an empty backlog, and
  every answer is then counted in S3.
The rate of each is 1,000 over its time. Separately, in process, the queue's own cost: one
`add`, `take` and `finish` per request on a fresh file (each a committed, fsynced
transaction), and one backlog count (the aggregate the metrics sample) over a full queue.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

import boto3

from bench.context import Context
from bench.polyhost_server import REGION, ROLE, PolyhostServer, write_image_config
from bench.procs import Service, free_port
from bench.report import Section
from polyhost.asyncinf.queue import AsyncQueue, AsyncRequest

KEY = "async"
TITLE = "18. Asynchronous inference: a queue of 1,000 drained, and the queue's cost"
ENDPOINT = "bench-async"
IMAGE = "bench/slow-echo"
PROGRAM = Path(__file__).with_name("async_container.py")
SERVICE_MS = 250
CONCURRENCY = 16
BODY = b'{"inputs": [1, 2, 3]}'


def _direct(port: int, requests: int, concurrency: int) -> float:
    """Seconds for `requests` calls to the container, `concurrency` at a time."""
    left = [requests]
    lock = threading.Lock()

    def client() -> None:
        connection = HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            connection.request("POST", "/invocations", BODY, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            assert answer.status == 200 and answer.read() == BODY
        connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def _backlog(server: PolyhostServer) -> int:
    with urllib.request.urlopen(server.admin_url + "/api/endpoints", timeout=30) as answer:
        endpoints = json.loads(answer.read())["endpoints"]
    (found,) = [e for e in endpoints if e["name"] == ENDPOINT]
    return int(found["backlog"]["size"])


def _deploy(server: PolyhostServer, bucket: str, hold: Path, concurrency: int) -> None:
    client = server.sagemaker()
    client.create_model(
        ModelName=ENDPOINT,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": IMAGE,
            "Environment": {"BENCH_SERVICE_MS": str(SERVICE_MS), "BENCH_HOLD": str(hold)},
        },
    )
    client.create_endpoint_config(
        EndpointConfigName=ENDPOINT,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": ENDPOINT, "InitialInstanceCount": 1}
        ],
        AsyncInferenceConfig={
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": concurrency},
            "OutputConfig": {"S3OutputPath": f"s3://{bucket}/out"},
        },
    )
    client.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=ENDPOINT)
    deadline = time.monotonic() + 120
    while client.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] != "InService":
        if time.monotonic() > deadline:
            raise RuntimeError("the asynchronous endpoint did not come InService")
        time.sleep(0.05)


def _through_queue(
    server: PolyhostServer, s3: Any, bucket: str, hold: Path, requests: int
) -> tuple[float, float]:
    """(seconds to queue `requests`, seconds to drain them once the model is let go)."""
    runtime = boto3.client("sagemaker-runtime", endpoint_url=server.url, region_name=REGION)
    location = f"s3://{bucket}/in/request.json"

    def invoke(index: int) -> None:
        runtime.invoke_endpoint_async(
            EndpointName=ENDPOINT,
            InputLocation=location,
            ContentType="application/json",
            InferenceId=f"req-{index:05d}",
        )

    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(invoke, range(requests)))
    queued = time.perf_counter() - started
    released = time.perf_counter()
    hold.touch()
    while _backlog(server) > 0:
        time.sleep(0.05)  # the admin API reads the control plane: not a busy loop
    drained = time.perf_counter() - released
    written = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="out/"):
        written += page.get("KeyCount", 0)
    if written != requests:
        raise RuntimeError(f"{written} answers in S3 after the drain, not {requests}")
    return queued, drained


def _queue_cost(requests: int) -> dict[str, float]:
    """µs per add, take and finish (each its own committed transaction), and per backlog
    count over `requests` waiting rows."""
    with tempfile.TemporaryDirectory() as folder:
        queue = AsyncQueue(Path(folder) / "async.db", max_per_endpoint=requests + 1)
        now = time.time()
        made = [
            AsyncRequest(
                endpoint="ep",
                inference_id=f"r{i}",
                input_location="s3://b/in",
                content_type="application/json",
                accept=None,
                custom_attributes=None,
                received=now,
                expires=now + 3600,
                timeout_s=900.0,
                output_location=f"s3://b/out/r{i}.out",
                failure_location=f"s3://b/out/r{i}-error.out",
            )
            for i in range(requests)
        ]
        started = time.perf_counter()
        for request in made:
            queue.add(request)
        added = time.perf_counter() - started
        counts = []
        for _ in range(20):
            begun = time.perf_counter()
            queue.backlog()
            counts.append(time.perf_counter() - begun)
        started = time.perf_counter()
        taken = [queue.take("ep", 1, now)[0] for _ in range(requests)]
        took = time.perf_counter() - started
        started = time.perf_counter()
        for request in taken:
            queue.finish(request.seq, True)
        finished = time.perf_counter() - started
        queue.close()
    per = 1e6 / requests
    return {
        "add_us": added * per,
        "take_us": took * per,
        "finish_us": finished * per,
        "total_us": (added + took + finished) * per,
        "backlog_count_us": statistics.median(counts) * 1e6,
    }


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    requests = 200 if ctx.quick else 1000
    concurrency = CONCURRENCY
    results: dict[str, Any] = {"requests": requests, "concurrency": concurrency}

    port = free_port()
    direct = Service(
        "slow echo (direct)",
        [sys.executable, str(PROGRAM), str(port)],
        work / "direct.log",
        env={"BENCH_SERVICE_MS": str(SERVICE_MS)},
    )
    with direct:
        direct.wait_http(f"http://127.0.0.1:{port}/ping")
        _direct(port, concurrency * 2, concurrency)  # warm: connections
        results["direct_s"] = _direct(port, requests, concurrency)
    print(f"  {KEY}: direct done", flush=True)

    moto_port = free_port()
    moto = Service(
        "moto (S3)",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        work / "moto.log",
    )
    saved = os.environ.get("AWS_ENDPOINT_URL_S3")
    images = write_image_config(work / "images-async.toml")
    with images.open("a", encoding="utf-8") as out:
        out.write(f'[images."{IMAGE}"]\ncommand = ["{sys.executable}", "{PROGRAM}"]\n')
    hold = (work / "release").resolve()  # the container runs in a folder of its own
    hold.unlink(missing_ok=True)
    try:
        with moto:
            moto.wait_http(f"http://127.0.0.1:{moto_port}/moto-api/")
            os.environ["AWS_ENDPOINT_URL_S3"] = f"http://127.0.0.1:{moto_port}"
            s3 = boto3.client("s3", region_name=REGION)
            bucket = "bench-async"
            s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=bucket, Key="in/request.json", Body=BODY)
            server = PolyhostServer(work / "polyhost", extra_args=["--image-config", str(images)])
            with server:
                _deploy(server, bucket, hold, concurrency)
                queued, drained = _through_queue(server, s3, bucket, hold, requests)
            results["queue_s"] = queued
            results["drain_s"] = drained
    finally:
        if saved is None:
            os.environ.pop("AWS_ENDPOINT_URL_S3", None)
        else:
            os.environ["AWS_ENDPOINT_URL_S3"] = saved
        hold.unlink(missing_ok=True)
    print(f"  {KEY}: queue drained", flush=True)
    results["cost"] = _queue_cost(requests)

    direct_rate = requests / results["direct_s"]
    drain_rate = requests / results["drain_s"]
    share = drain_rate / direct_rate
    added_ms = (concurrency / drain_rate - concurrency / direct_rate) * 1e3
    cost = results["cost"]
    section.add(
        f"A model answering in {SERVICE_MS} ms, {requests} requests at concurrency "
        f"{concurrency}: called directly by {concurrency} kept-alive client connections, and "
        f"through polyhost's queue (MaxConcurrentInvocationsPerInstance {concurrency}, one "
        "instance; the input read from and each answer written to S3 on moto's server, on "
        f"this machine). The {requests} InvokeEndpointAsync calls were queued (4 client "
        f"threads, {results['queue_s']:.1f} s) while the model held its first answers, then "
        "timed from its release until the admin API reported an empty backlog; all answers "
        "were then found in S3. Direct and queued measured in the same run.",
        "",
    )
    section.table(
        ["path", "seconds", "requests/s", "per-request time per slot ms"],
        [
            ["direct", results["direct_s"], direct_rate, concurrency / direct_rate * 1e3],
            ["queue (drain)", results["drain_s"], drain_rate, concurrency / drain_rate * 1e3],
        ],
    )
    section.add(
        "",
        f"Added per request by the queue (S3 read and write, queue commits, dispatch): "
        f"{added_ms:.1f} ms of each slot's time.",
        "",
        f"The queue's own cost, in process on a fresh file, {requests} requests (each call a "
        "committed transaction, `synchronous=FULL`):",
        "",
    )
    section.table(
        ["add µs", "take µs", "finish µs", "add+take+finish µs", "backlog count µs"],
        [
            [
                cost["add_us"],
                cost["take_us"],
                cost["finish_us"],
                cost["total_us"],
                cost["backlog_count_us"],
            ]
        ],
    )
    section.add(
        "",
        f"(the backlog count: the one aggregate the metrics sample every 10 s, over "
        f"{requests} waiting rows, median of 20)",
        "",
    )
    section.target(
        "queue drain rate vs direct at the same concurrency",
        f"{share:.1%}",
        "≥ 95%",
        share >= 0.95,
    )
    ctx.save_raw(KEY, results)
    return section
