"""Scenario 21: what data capture at 100 % sampling costs c=32 throughput, on two workloads.

One polyhost server, and per workload two endpoints of the same container: one whose config
has a DataCaptureConfig (100 % sampling, Input and Output, `application/json` captured as
text) into a bucket on moto's S3 server on this machine, one without. The workloads:

- the light echo container, 1 KB JSON bodies: the worst case, since the server's own work per
  invocation (about 60 µs of CPU) is all there is for capture to be compared with;
- `polyhost/sklearn` with a real model (the digits LogisticRegression of `bench.models`, one
  row per request): what users run, where the model's work is part of each invocation.

Rounds alternate between a workload's two endpoints (the order turns from round to round), wrk
at 32 connections. The target is judged on each workload, on the median over the rounds of
each round's throughput ratio, since the machine is shared.

Every captured record must reach S3: after the rounds the server's counters (`/metrics`:
written, dropped, failed) are read once the writer has flushed, and listed. A dropped record
(the bounded buffer full) would make capture look cheaper than it is, so drops are shown.

CPU is read per process: the server's (its event loop and the thread that hands batches on)
per request, and the capture writer process's (formatting, S3 calls), which the server starts
with the first endpoint that captures, per captured request over all the rounds. Both share
the machine's two cores with wrk and the containers, so the writer's CPU is a cost too.

Also, in process: what the invocation path pays per request, with real objects: the check when
no endpoint captures (the adapter's one attribute test), and the queueing of a sampled
invocation (`DataCapture.offer`); and what the writer process spends formatting one record.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import timeit
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psutil

from bench.checks import expect_ok
from bench.context import Context
from bench.loadgen import Latency, wrk_run
from bench.models import digits
from bench.payloads import json_body, write_bodies
from bench.polyhost_server import ECHO_IMAGE, REGION, ROLE, PolyhostServer
from bench.procs import Service, StartFailed, free_port
from bench.report import Section

KEY = "data-capture"
TITLE = "21. Data capture: 100 % sampling against none, c=32 throughput"
CONTENT_TYPE = "application/json"
BUCKET = "bench-capture"
FLUSH_S = 5
COUNTERS = ("records", "dropped", "failed")
WRITER_MODULE = "polyhost.capture.process"
CAPTURE = {
    "EnableCapture": True,
    "InitialSamplingPercentage": 100,
    "DestinationS3Uri": f"s3://{BUCKET}/capture",
    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    "CaptureContentTypeHeader": {"JsonContentTypes": [CONTENT_TYPE]},
}


@dataclass
class Workload:
    """One container, behind a capturing endpoint and a plain one."""

    key: str
    label: str
    container: dict[str, Any]
    body: Path
    captured: str = ""
    plain: str = ""
    runs: dict[str, list[Latency]] = field(default_factory=dict)
    cpu_us: dict[str, list[float]] = field(default_factory=dict)  # server process, per request
    machine_us: dict[str, list[float]] = field(default_factory=dict)  # every process, per request
    writer_cpu_s: float = 0.0  # the writer process, over the captured runs and what follows
    s3_cpu_s: float = 0.0  # moto's S3 server, likewise (real S3 is elsewhere)
    counts: dict[str, float] = field(default_factory=dict)
    warm: int = 0  # requests to the capturing endpoint before the rounds (captured too)
    objects: int = 0

    def __post_init__(self) -> None:
        self.captured, self.plain = f"bench-{self.key}-captured", f"bench-{self.key}-plain"
        self.runs = {self.captured: [], self.plain: []}
        self.cpu_us = {self.captured: [], self.plain: []}
        self.machine_us = {self.captured: [], self.plain: []}

    @property
    def answered(self) -> int:
        return 1 + self.warm + sum(int(r.requests) for r in self.runs[self.captured])

    @property
    def ratios(self) -> list[float]:
        return [
            c.rps / p.rps
            for c, p in zip(self.runs[self.captured], self.runs[self.plain], strict=True)
        ]


def _deploy(
    server: PolyhostServer, name: str, container: dict[str, Any], capture: dict[str, Any] | None
) -> None:
    client = server.sagemaker()
    client.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container)
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
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        described = client.describe_endpoint(EndpointName=name)
        status = described["EndpointStatus"]
        if status == "InService":
            return
        if status not in ("Creating", "Updating"):
            raise StartFailed(f"endpoint {name} is {status}: {described.get('FailureReason')}")
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


def _writer(server: psutil.Process) -> psutil.Process | None:
    """The capture writer process among the server's children."""
    for child in server.children():
        try:
            if WRITER_MODULE in child.cmdline():
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def _cpu(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    try:
        return float(sum(process.cpu_times()[:2]))
    except psutil.NoSuchProcess:
        return 0.0


def _machine_cpu() -> float:
    """CPU seconds the whole machine has spent busy (every process, every core)."""
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _in_process() -> dict[str, float]:
    """Per-invocation costs with the real objects, in nanoseconds."""
    from polyhost.capture.config import capture_target
    from polyhost.capture.process import BatchWriter
    from polyhost.capture.record import RecordFormat, event_ids
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
    rows = capture.buffer.take()[0][:2000]
    form = RecordFormat(target.csv_types, target.json_types)
    started = time.perf_counter()
    for row, event in zip(rows, event_ids(len(rows)), strict=True):
        form.line(row, event)
    format_ns = (time.perf_counter() - started) / len(rows) * 1e9
    # The writer process's whole share but S3: ids, formatting, grouping into objects.
    writer = BatchWriter(None)  # type: ignore[arg-type]  (no S3 call is made)
    writer.begin([target.wire()])
    started = time.perf_counter()
    writer.add(rows)
    batch_ns = (time.perf_counter() - started) / len(rows) * 1e9
    return {"off_ns": off_ns, "offer_ns": offer_ns, "format_ns": format_ns, "batch_ns": batch_ns}


def _measure(
    server: PolyhostServer,
    process: psutil.Process,
    s3: psutil.Process,
    work: Workload,
    rounds: int,
    seconds: float,
) -> None:
    for name in (work.captured, work.plain):
        expect_ok(server.invocations_url(name), work.body.read_bytes(), CONTENT_TYPE)
    for name in (work.captured, work.plain):  # warm-up
        warm = wrk_run(server.invocations_url(name), work.body, CONTENT_TYPE, connections=32,
                       duration_s=1.0)  # fmt: skip
        if name == work.captured:
            work.warm = int(warm.requests)
    for index in range(rounds):
        order = (work.captured, work.plain) if index % 2 else (work.plain, work.captured)
        for name in order:
            writer = _writer(process)
            before, writer_before, s3_before = _cpu(process), _cpu(writer), _cpu(s3)
            machine_before = _machine_cpu()
            found = wrk_run(
                server.invocations_url(name),
                work.body,
                CONTENT_TYPE,
                connections=32,
                duration_s=seconds,
            )
            spent = _cpu(process) - before
            machine = _machine_cpu() - machine_before
            work.runs[name].append(found)
            work.cpu_us[name].append(spent / max(found.requests, 1) * 1e6)
            work.machine_us[name].append(machine / max(found.requests, 1) * 1e6)
            if name == work.captured:
                work.writer_cpu_s += _cpu(writer) - writer_before
                work.s3_cpu_s += _cpu(s3) - s3_before
        print(f"  {KEY}: {work.key} round {index + 1} of {rounds} done", flush=True)


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work_dir = ctx.work(KEY)
    rounds = 1 if ctx.quick else 6
    seconds = 1.0 if ctx.quick else 8.0
    flush_s = 1 if ctx.quick else FLUSH_S
    echo_body = write_bodies(work_dir / "bodies", {"1KB": 1024})["1KB"]
    model = digits(work_dir / "model")
    sklearn_body = work_dir / "sklearn-request.json"
    sklearn_body.write_text(json.dumps({"instances": model.rows}), encoding="utf-8")
    workloads = [
        Workload("echo", "light echo container, 1 KB JSON", {"Image": ECHO_IMAGE}, echo_body),
        Workload(
            "sklearn",
            "polyhost/sklearn, digits LogisticRegression, one row",
            {"Image": "polyhost/sklearn", "ModelDataUrl": model.url},
            sklearn_body,
        ),
    ]
    moto_port = free_port()
    moto = Service(
        "moto (S3)",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        work_dir / "moto.log",
    )
    saved = os.environ.get("AWS_ENDPOINT_URL_S3")
    try:
        with moto:
            moto.wait_http(f"http://127.0.0.1:{moto_port}/moto-api/")
            os.environ["AWS_ENDPOINT_URL_S3"] = f"http://127.0.0.1:{moto_port}"
            s3 = boto3.client("s3", region_name=REGION)
            s3.create_bucket(Bucket=BUCKET)
            server = PolyhostServer(
                work_dir / "polyhost", extra_args=["--data-capture-flush-s", str(flush_s)]
            )
            with server:
                for work in workloads:
                    _deploy(server, work.captured, work.container, CAPTURE)
                    _deploy(server, work.plain, work.container, None)
                assert server.service is not None
                process = psutil.Process(server.service.pid)
                s3_process = psutil.Process(moto.pid)
                for work in workloads:
                    _measure(server, process, s3_process, work, rounds, seconds)
                    writer = _writer(process)
                    before, s3_before = _cpu(writer), _cpu(s3_process)
                    work.counts = _settled(server, work.captured, work.answered, flush_s)
                    work.writer_cpu_s += _cpu(writer) - before
                    work.s3_cpu_s += _cpu(s3_process) - s3_before
                    work.objects = sum(
                        page.get("KeyCount", 0)
                        for page in s3.get_paginator("list_objects_v2").paginate(
                            Bucket=BUCKET, Prefix=f"capture/{work.captured}/AllTraffic/"
                        )
                    )
    finally:
        if saved is None:
            os.environ.pop("AWS_ENDPOINT_URL_S3", None)
        else:
            os.environ["AWS_ENDPOINT_URL_S3"] = saved
    errors = sum(r.errors for work in workloads for name in work.runs for r in work.runs[name])
    if errors:
        raise RuntimeError(f"{errors} requests failed during the rounds")
    costs = _in_process()
    _report(section, workloads, costs, flush_s, rounds, seconds)
    ctx.save_raw(
        KEY,
        {
            work.key: {
                "runs": {name: [vars(r) for r in found] for name, found in work.runs.items()},
                "server_cpu_us_per_request": work.cpu_us,
                "machine_cpu_us_per_request": work.machine_us,
                "writer_cpu_s": work.writer_cpu_s,
                "s3_cpu_s": work.s3_cpu_s,
                "warm_up_requests": work.warm,
                "counters": work.counts,
                "objects": work.objects,
            }
            for work in workloads
        }
        | {"in_process": costs},
    )
    return section


def _report(
    section: Section,
    workloads: list[Workload],
    costs: dict[str, float],
    flush_s: float,
    rounds: int,
    seconds: float,
) -> None:
    section.add(
        "Two workloads, each behind two endpoints of one server: one capturing 100 % of its "
        "invocations (Input and Output, JSON captured as text) to S3 on moto's server on this "
        f"machine (`--data-capture-flush-s {flush_s}`), one without DataCaptureConfig: "
        + "; ".join(f"{w.label}" for w in workloads)
        + f". wrk, 32 connections, {seconds:g} s per run, {rounds} rounds alternating per "
        "workload (the order turns each round), nothing pinned. The server formats nothing: "
        "it queues a tuple per captured invocation and hands batches to its capture writer "
        "process, which formats and writes them; that process's CPU is shown apart.",
        "",
    )
    for work in workloads:
        runs = work.runs
        section.add(f"**{work.label}**", "")
        section.table(
            ["round", "no capture req/s", "capture 100 % req/s", "ratio",
             "no capture p99 ms", "capture p99 ms", "server CPU µs/req (none / capture)",
             "machine CPU µs/req (none / capture)"],
            [
                [index + 1, p.rps, c.rps, f"{c.rps / p.rps:.3f}", p.p99_ms, c.p99_ms,
                 f"{work.cpu_us[work.plain][index]:.0f} / "
                 f"{work.cpu_us[work.captured][index]:.0f}",
                 f"{work.machine_us[work.plain][index]:.0f} / "
                 f"{work.machine_us[work.captured][index]:.0f}"]
                for index, (c, p) in enumerate(
                    zip(runs[work.captured], runs[work.plain], strict=True))
            ],
        )  # fmt: skip
        added = statistics.median(work.cpu_us[work.captured]) - statistics.median(
            work.cpu_us[work.plain]
        )
        writer_us = work.writer_cpu_s / max(work.answered, 1) * 1e6
        machine = {name: statistics.median(values) for name, values in work.machine_us.items()}
        s3_us = work.s3_cpu_s / max(work.answered, 1) * 1e6
        counts = work.counts
        section.add(
            f"Captured invocations answered: {work.answered}; the server's counters once "
            f"flushed: {counts['records']:.0f} written, {counts['dropped']:.0f} dropped "
            f"(buffer full), {counts['failed']:.0f} failed; {work.objects} objects in S3 "
            "(one per variant, hour and flush). Server process CPU added per captured request "
            f"(median over the rounds): {added:.1f} µs; the capture writer process: "
            f"{writer_us:.1f} µs per captured request; moto's S3 server taking the objects (on "
            f"this machine, unlike S3): {s3_us:.1f} µs per captured request. The whole "
            "machine (every process on it, whoever runs it, both cores; median over the "
            "rounds): "
            f"{machine[work.plain]:.0f} µs of CPU per request without capture, "
            f"{machine[work.captured]:.0f} µs with it. The machine is saturated at c=32, so "
            "throughput goes as the inverse of that: the ≤ 5 % target needs capture to add "
            f"at most about {machine[work.plain] * 0.05:.0f} µs of the machine's CPU per "
            "request, wherever it runs.",
            "",
        )
    section.add(
        "In process, per invocation (real objects, best of 5): the check when no endpoint "
        f"captures {costs['off_ns']:.0f} ns; queueing a sampled 1 KB invocation "
        f"(draw, tuple, bounded buffer) {costs['offer_ns'] / 1000:.2f} µs. Off the server, the "
        f"writer process formats one record (orjson, event id, time) in "
        f"{costs['format_ns'] / 1000:.1f} µs, {costs['batch_ns'] / 1000:.1f} µs with its "
        "grouping into objects.",
        "",
    )
    for work in workloads:
        cost = 1 - statistics.median(work.ratios)
        section.target(
            f"capture at 100 % sampling: cost in c=32 throughput, {work.label} (median of the "
            "rounds' ratios)",
            f"{cost:.1%}",
            "≤ 5%",
            cost <= 0.05,
        )
    for work in workloads:
        section.target(
            f"every captured invocation written, {work.label} (none dropped or failed)",
            f"{work.counts['records']:.0f} of {work.answered}",
            f"{work.answered}",
            work.counts["records"] >= work.answered,
        )
