"""Scenario 21: what data capture at 100 % sampling costs c=32 throughput.

One polyhost server, two endpoints of the same light echo container: one whose config has a
DataCaptureConfig (100 % sampling, Input and Output, `application/json` captured as text) into
a bucket on moto's S3 server on this machine, one without. Rounds alternate between them (the
order turns from round to round), wrk at 32 connections, 1 KB JSON bodies. The target uses the
median over the rounds of each round's throughput ratio, since the machine is shared.

Every captured record must reach S3: after the rounds the server's counters (`/metrics`:
written, dropped, failed) are read once the writer has flushed, and listed. A dropped record
(the bounded buffer full) would make capture look cheaper than it is, so drops are shown.

Also, in process: what the invocation path pays per request, with real objects: the check when
no endpoint captures (the adapter's one attribute test), and the queueing of a sampled
invocation (`DataCapture.offer`); and what the writer's thread spends formatting one record.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import timeit
import urllib.request
from typing import Any

import boto3
import psutil

from bench.checks import expect_ok
from bench.context import Context
from bench.loadgen import Latency, wrk_run
from bench.payloads import json_body, write_bodies
from bench.polyhost_server import ECHO_IMAGE, REGION, ROLE, PolyhostServer
from bench.procs import Service, StartFailed, free_port
from bench.report import Section

KEY = "data-capture"
TITLE = "21. Data capture: 100 % sampling against none, c=32 throughput"
CONTENT_TYPE = "application/json"
BUCKET = "bench-capture"
CAPTURED = "bench-captured"
PLAIN = "bench-plain"
FLUSH_S = 5
COUNTERS = ("records", "dropped", "failed")


def _deploy(server: PolyhostServer, name: str, capture: dict[str, Any] | None) -> None:
    client = server.sagemaker()
    client.create_model(
        ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": ECHO_IMAGE}
    )
    extra = {} if capture is None else {"DataCaptureConfig": capture}
    client.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        **extra,
    )
    client.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = client.describe_endpoint(EndpointName=name)["EndpointStatus"]
        if status == "InService":
            return
        if status not in ("Creating", "Updating"):
            raise StartFailed(f"endpoint {name} is {status}")
        time.sleep(0.02)
    raise StartFailed(f"endpoint {name} not InService")


def _counters(server: PolyhostServer, endpoint: str) -> dict[str, float]:
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    found = dict.fromkeys(COUNTERS, 0.0)
    for line in text.splitlines():
        for counter in COUNTERS:
            if line.startswith(f"polyhost_data_capture_{counter}_total{{") and (
                f'endpoint_name="{endpoint}"' in line
            ):
                found[counter] += float(line.rsplit(" ", 1)[1])
    return found


def _settled(
    server: PolyhostServer, endpoint: str, answered: int, flush_s: float
) -> dict[str, float]:
    """The counters once every captured invocation is written, dropped or failed."""
    deadline = time.monotonic() + flush_s * 3 + 30
    while True:
        counts = _counters(server, endpoint)
        if sum(counts.values()) >= answered or time.monotonic() > deadline:
            return counts
        time.sleep(0.5)


def _in_process() -> dict[str, float]:
    """Per-invocation costs with the real objects, in nanoseconds."""
    from polyhost.capture.config import capture_target
    from polyhost.capture.record import record_line
    from polyhost.capture.service import DataCapture
    from polyhost.control.seam import DataCaptureSpec, EndpointSpec, VariantSpec
    from polyhost.router.router import InvokeRequest, InvokeResult
    from polyhost.settings import Settings

    capture = DataCapture(
        Settings(data_capture_max_queued=10**9, data_capture_max_queued_bytes=2**40)
    )
    spec = EndpointSpec(
        endpoint_name="e",
        endpoint_arn="arn",
        endpoint_config_name="c",
        variants=(VariantSpec("AllTraffic", "m", (), "Serial"),),
        revision=1,
        data_capture=DataCaptureSpec("s3://b/p", 100, json_content_types=("application/json",)),
    )
    target = capture_target(spec)
    assert target is not None
    body = json_body(1024)
    request = InvokeRequest(body=body, content_type=b"application/json")
    result = InvokeResult(body=b"echo:" + body, content_type=b"application/json",
                          variant="AllTraffic", custom_attributes=None)  # fmt: skip
    holder = type("Adapter", (), {"_capture": capture})()
    number = 200_000

    def off() -> None:
        captured = holder._capture
        if captured is not None and captured.targets:
            raise AssertionError

    def offer() -> None:
        if target.sampler.sampled():
            capture.offer(target, request, result)

    off_ns = min(timeit.repeat(off, number=number, repeat=5)) / number * 1e9
    offer_ns = min(timeit.repeat(offer, number=20_000, repeat=5)) / 20_000 * 1e9
    items = capture.buffer.take()[:2000]
    started = time.perf_counter()
    for item in items:
        record_line(item, target.csv_types, target.json_types)
    format_ns = (time.perf_counter() - started) / len(items) * 1e9
    return {"off_ns": off_ns, "offer_ns": offer_ns, "format_ns": format_ns}


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    rounds = 1 if ctx.quick else 6
    seconds = 1.0 if ctx.quick else 8.0
    flush_s = 1 if ctx.quick else FLUSH_S
    body = write_bodies(work / "bodies", {"1KB": 1024})["1KB"]
    moto_port = free_port()
    moto = Service(
        "moto (S3)",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        work / "moto.log",
    )
    saved = os.environ.get("AWS_ENDPOINT_URL_S3")
    runs: dict[str, list[Latency]] = {CAPTURED: [], PLAIN: []}
    # CPU of the server's process (its threads: the event loop and the capture writer) per
    # request: steadier than throughput on a shared machine.
    cpu_us: dict[str, list[float]] = {CAPTURED: [], PLAIN: []}
    try:
        with moto:
            moto.wait_http(f"http://127.0.0.1:{moto_port}/moto-api/")
            os.environ["AWS_ENDPOINT_URL_S3"] = f"http://127.0.0.1:{moto_port}"
            s3 = boto3.client("s3", region_name=REGION)
            s3.create_bucket(Bucket=BUCKET)
            server = PolyhostServer(
                work / "polyhost", extra_args=["--data-capture-flush-s", str(flush_s)]
            )
            with server:
                _deploy(
                    server,
                    CAPTURED,
                    {
                        "EnableCapture": True,
                        "InitialSamplingPercentage": 100,
                        "DestinationS3Uri": f"s3://{BUCKET}/capture",
                        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
                        "CaptureContentTypeHeader": {"JsonContentTypes": [CONTENT_TYPE]},
                    },
                )
                _deploy(server, PLAIN, None)
                for name in (CAPTURED, PLAIN):
                    expect_ok(server.invocations_url(name), body.read_bytes(), CONTENT_TYPE)
                assert server.service is not None
                process = psutil.Process(server.service.pid)
                for index in range(rounds):
                    order = (CAPTURED, PLAIN) if index % 2 else (PLAIN, CAPTURED)
                    for name in order:
                        before = sum(process.cpu_times()[:2])
                        found = wrk_run(
                            server.invocations_url(name),
                            body,
                            CONTENT_TYPE,
                            connections=32,
                            duration_s=seconds,
                        )
                        spent = sum(process.cpu_times()[:2]) - before
                        runs[name].append(found)
                        cpu_us[name].append(spent / max(found.requests, 1) * 1e6)
                    print(f"  {KEY}: round {index + 1} of {rounds} done", flush=True)
                answered = 1 + sum(int(r.requests) for r in runs[CAPTURED])
                counts = _settled(server, CAPTURED, answered, flush_s)
                objects = sum(
                    page.get("KeyCount", 0)
                    for page in s3.get_paginator("list_objects_v2").paginate(
                        Bucket=BUCKET, Prefix=f"capture/{CAPTURED}/AllTraffic/"
                    )
                )
    finally:
        if saved is None:
            os.environ.pop("AWS_ENDPOINT_URL_S3", None)
        else:
            os.environ["AWS_ENDPOINT_URL_S3"] = saved
    errors = sum(r.errors for name in runs for r in runs[name])
    if errors:
        raise RuntimeError(f"{errors} requests failed during the rounds")
    costs = _in_process()

    ratios = [c.rps / p.rps for c, p in zip(runs[CAPTURED], runs[PLAIN], strict=True)]
    ratio = statistics.median(ratios)
    section.add(
        f"The light echo container behind two endpoints of one server: one capturing 100 % "
        f"of its invocations (Input and Output, JSON captured as text) to S3 on moto's server "
        f"on this machine (`--data-capture-flush-s {flush_s}`), one without DataCaptureConfig. "
        f"wrk, 32 connections, 1 KB JSON, {seconds:g} s per run, {rounds} rounds alternating "
        "(the order turns each round), nothing pinned.",
        "",
    )
    section.table(
        ["round", "no capture req/s", "capture 100 % req/s", "ratio",
         "no capture p99 ms", "capture p99 ms", "server CPU µs/req (none / capture)"],
        [
            [index + 1, p.rps, c.rps, f"{c.rps / p.rps:.3f}", p.p99_ms, c.p99_ms,
             f"{cpu_us[PLAIN][index]:.0f} / {cpu_us[CAPTURED][index]:.0f}"]
            for index, (c, p) in enumerate(zip(runs[CAPTURED], runs[PLAIN], strict=True))
        ],
    )  # fmt: skip
    section.add(
        f"Captured invocations answered: {answered}; the server's counters once flushed: "
        f"{counts['records']:.0f} written, {counts['dropped']:.0f} dropped (buffer full), "
        f"{counts['failed']:.0f} failed; {objects} objects in S3 "
        "(one per variant, hour and flush).",
        "",
        "In process, per invocation (real objects, best of 5): the check when no endpoint "
        f"captures {costs['off_ns']:.0f} ns; queueing a sampled 1 KB invocation "
        f"(draw, record, bounded buffer) {costs['offer_ns'] / 1000:.2f} µs. Off the path, the "
        f"writer's thread formats one record (JSON, uuid, time) in "
        f"{costs['format_ns'] / 1000:.1f} µs.",
        "",
    )
    added_cpu = statistics.median(cpu_us[CAPTURED]) - statistics.median(cpu_us[PLAIN])
    section.add(
        f"Server CPU added per captured request (median over the rounds): {added_cpu:.1f} µs "
        "(the event loop's share and the writer's formatting and S3 calls, one process).",
        "",
    )
    cost = 1 - ratio
    section.target(
        "capture at 100 % sampling: cost in c=32 throughput (median of the rounds' ratios)",
        f"{cost:.1%}",
        "≤ 5%",
        cost <= 0.05,
    )
    section.target(
        "every captured invocation written (none dropped or failed)",
        f"{counts['records']:.0f} of {answered}",
        f"{answered}",
        counts["records"] >= answered,
    )
    ctx.save_raw(
        KEY,
        {
            "runs": {name: [vars(r) for r in found] for name, found in runs.items()},
            "server_cpu_us_per_request": cpu_us,
            "counters": counts,
            "objects": objects,
            "in_process": costs,
        },
    )
    return section
