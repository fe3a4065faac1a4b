"""Scenario 17: a multi-model endpoint with 1,000 sklearn models and room for about 100.

One `polyhost/sklearn` container in `Mode: MultiModel` serves 1,000 small models (a digits
LogisticRegression, each with its own intercepts so that it answers its own class, and a
1 MiB array that makes its memory known) from one prefix on a local S3 server (moto's server
mode, as a user would run MinIO). The models' memory budget
(`POLYHOST_MULTI_MODEL_MEMORY_BYTES`) holds about 100 of them. A round robin over 300 of them
(the issue's workload: many models behind the prefix, a few hundred in use) loads each once, in
order, so the platform unloads the least recently used ones about 200 times; the other 700 are
there only to be under the prefix, as a fleet's rarely used models are. (Calling all 1,000 cold
took 3.5 minutes of the scenario's 5 and measured nothing the first 300 do not: each cold call
is the same fetch, extract, unload and load.)

Measured, one request at a time on one keep-alive connection (the latency a caller sees):

- cold: each of the 300 models' first call (fetch from S3, extract, load in the container,
  invoke);
- warm: 50 models that are loaded, called in turn;
- warm overhead: the same model behind TargetModel and on a single-model endpoint, in
  alternating rounds (the p50 difference and ratio per round, the median of the rounds);
- the container's resident memory, sampled during the cold pass, against what it held with
  one model plus the budget; its process id before and after (no restart); every answer checked.
"""

from __future__ import annotations

import contextlib
import copy
import http.client
import io
import json
import os
import statistics
import sys
import tarfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psutil

from bench.context import Context
from bench.loadgen import percentile
from bench.machine import machine_lines
from bench.polyhost_server import PolyhostServer
from bench.procs import Service, free_port
from bench.report import Section

KEY = "multi-model"
TITLE = "17. Multi-model endpoint: 1,000 sklearn models, a memory budget for about 100"
JSON = "application/json"
TARGET_HEADER = "X-Amzn-SageMaker-Target-Model"
PAD_BYTES = 1024 * 1024  # each model's known memory, beside its ~5 KB of weights
S3_KEYS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}


@dataclass(frozen=True)
class Plan:
    models: int  # under the prefix
    cold_models: int  # called in turn, each once cold: the first of them
    room: int  # how many models the budget is sized for
    warm_models: int
    warm_rounds: int
    overhead_rounds: int
    overhead_requests: int

    @property
    def budget(self) -> int:
        return int(self.room * PAD_BYTES * 1.15)


FULL = Plan(models=1000, cold_models=300, room=100, warm_models=50, warm_rounds=20,
            overhead_rounds=10, overhead_requests=2000)  # fmt: skip
QUICK = Plan(models=40, cold_models=24, room=8, warm_models=5, warm_rounds=4,
             overhead_rounds=2, overhead_requests=200)  # fmt: skip


def _name(index: int) -> str:
    return f"team/m{index:04d}.tar.gz"


def _archives(count: int) -> Iterator[tuple[str, bytes, int, list[list[float]]]]:
    """(TargetModel, model.tar.gz, the class it answers, the request row) for each model."""
    import joblib
    import numpy as np
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    x, y = load_digits(return_X_y=True)
    base = LogisticRegression(max_iter=2000).fit(x, y)
    row = [[float(v) for v in x[0]]]
    for index in range(count):
        model = copy.deepcopy(base)
        answer = (index * 7) % 10
        model.intercept_ = base.intercept_.copy()
        model.intercept_[answer] += 1000.0  # this model answers `answer` for every row
        # A constant array: tiny in the archive, PAD_BYTES resident once loaded.
        model.padding_ = np.full(PAD_BYTES // 8, float(index))
        joblib_bytes = io.BytesIO()
        joblib.dump(model, joblib_bytes)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            info = tarfile.TarInfo("model.joblib")
            info.size = len(joblib_bytes.getvalue())
            archive.addfile(info, io.BytesIO(joblib_bytes.getvalue()))
        yield _name(index), buffer.getvalue(), answer, row


@contextlib.contextmanager
def _local_s3(work: Path) -> Iterator[str]:
    """moto's S3 server on a free port; yields its endpoint URL."""
    port = free_port()
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with Service("moto-s3", command, work / "moto.log") as service:
        endpoint = f"http://127.0.0.1:{port}"
        service.wait_http(endpoint + "/moto-api/", timeout=60)
        yield endpoint


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ while the server starts (it inherits them), restored after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Caller:
    """InvokeEndpoint on one keep-alive connection, timed per call, every answer checked."""

    def __init__(self, server: PolyhostServer) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)

    def call(self, endpoint: str, body: bytes, expected: int, target: str | None = None) -> float:
        headers = {"Content-Type": JSON}
        if target is not None:
            headers[TARGET_HEADER] = target
        started = time.perf_counter()
        self.connection.request("POST", f"/endpoints/{endpoint}/invocations", body, headers)
        answer = self.connection.getresponse()
        data = answer.read()
        seconds = time.perf_counter() - started
        if answer.status != 200 or json.loads(data) != [expected]:
            raise RuntimeError(
                f"{endpoint} {target}: {answer.status} {data[:300]!r}, expected [{expected}]"
            )
        return seconds

    def close(self) -> None:
        self.connection.close()


def _container(server: PolyhostServer) -> psutil.Process:
    """The endpoint's multi-model container process (the one with SAGEMAKER_MULTI_MODEL)."""
    assert server.service is not None
    for child in psutil.Process(server.service.pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if child.environ().get("SAGEMAKER_MULTI_MODEL") == "true":
                return child
    raise RuntimeError("no multi-model container found")


class Sampler:
    """The peak resident memory of a process, sampled every 20 ms on a thread."""

    def __init__(self, process: psutil.Process) -> None:
        self.process = process
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _prometheus(server: PolyhostServer, endpoint: str) -> dict[str, float]:
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=30) as answer:
        text = answer.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if f'endpoint_name="{endpoint}"' in line and not line.startswith("#"):
            name = line.split("{", 1)[0]
            if "_bucket" not in name:
                samples[name] = samples.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return samples


def _ms(values: list[float], pct: float) -> float:
    return percentile(sorted(values), pct) * 1e3


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    plan = QUICK if ctx.quick else FULL
    work = ctx.work(KEY)
    results: dict[str, Any] = {"plan": vars(plan) | {"budget": plan.budget}}
    with _local_s3(work) as s3_endpoint:
        s3_env = {"AWS_ENDPOINT_URL_S3": s3_endpoint, **S3_KEYS}
        s3 = boto3.client(
            "s3",
            endpoint_url=s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"],
        )
        s3.create_bucket(Bucket="models")
        started = time.perf_counter()
        answers: dict[str, int] = {}
        rows: list[list[float]] = []
        archive_bytes = 0
        for name, data, answer, row in _archives(plan.models):
            s3.put_object(Bucket="models", Key=f"mme/{name}", Body=data)
            answers[name] = answer
            archive_bytes, rows = len(data), row
        results["upload_s"] = time.perf_counter() - started
        body = json.dumps(rows).encode()
        with _environment(s3_env), PolyhostServer(work / "polyhost") as server:
            mme = {
                "Image": "polyhost/sklearn",
                "Mode": "MultiModel",
                "ModelDataUrl": "s3://models/mme/",
                "Environment": {"POLYHOST_MULTI_MODEL_MEMORY_BYTES": str(plan.budget)},
            }
            server.deploy("mme", [mme])
            first = _name(0)
            single = {"Image": "polyhost/sklearn", "ModelDataUrl": f"s3://models/mme/{first}"}
            server.deploy("single", [single])
            caller = Caller(server)
            try:
                _measure(server, caller, plan, body, answers, results)
            finally:
                caller.close()
    results["archive_bytes"] = archive_bytes
    ctx.save_raw(KEY, results)
    _report(section, plan, results)
    return section


def _measure(
    server: PolyhostServer,
    caller: Caller,
    plan: Plan,
    body: bytes,
    answers: dict[str, int],
    results: dict[str, Any],
) -> None:
    names = [_name(index) for index in range(plan.cold_models)]
    container = _container(server)
    results["rss_at_rest"] = container.memory_info().rss
    cold = [caller.call("mme", body, answers[names[0]], names[0])]
    results["rss_one_model"] = container.memory_info().rss
    with Sampler(container) as sampler:
        for name in names[1:]:
            cold.append(caller.call("mme", body, answers[name], name))
    results["rss_peak"] = sampler.peak
    results["cold_s"] = cold
    after_cold = _prometheus(server, "mme")
    results["metrics_after_cold"] = after_cold
    print(
        f"  cold: p50 {_ms(cold[1:], 50):.1f} ms p99 {_ms(cold[1:], 99):.1f} ms, "
        f"{after_cold.get('polyhost_loaded_models', 0):.0f} loaded, "
        f"{after_cold.get('polyhost_model_unloading_time_microseconds_count', 0):.0f} unloaded",
        flush=True,
    )
    warm_names = names[-plan.warm_models :]
    warm = [
        caller.call("mme", body, answers[name], name)
        for _ in range(plan.warm_rounds)
        for name in warm_names
    ]
    results["warm_s"] = warm
    after_warm = _prometheus(server, "mme")
    results["warm_misses"] = after_warm.get("polyhost_model_cache_misses_total", 0) - (
        after_cold.get("polyhost_model_cache_misses_total", 0)
    )
    # The same model, warm, behind TargetModel and on its own endpoint.
    target = names[0]
    caller.call("mme", body, answers[target], target)  # loaded again (evicted long ago)
    rounds: list[dict[str, float]] = []
    for number in range(plan.overhead_rounds):
        sides = [("single", None), ("mme", target)]
        measured: dict[str, float] = {}
        for endpoint, model in sides if number % 2 == 0 else reversed(sides):
            for _ in range(300):  # warm-up of this side's connection path
                caller.call(endpoint, body, answers[target], model)
            latencies = [
                caller.call(endpoint, body, answers[target], model)
                for _ in range(plan.overhead_requests)
            ]
            measured[endpoint] = statistics.median(latencies) * 1e6
        rounds.append(measured)
    results["overhead_rounds_us"] = rounds
    results["final_metrics"] = _prometheus(server, "mme")
    results["same_container"] = _container(server).pid == container.pid
    print(f"  overhead rounds (p50 µs): {rounds}", flush=True)


def _report(section: Section, plan: Plan, results: dict[str, Any]) -> None:
    cold = results["cold_s"][1:]  # the first one also imports scikit-learn in the container
    warm = results["warm_s"]
    metrics = results["metrics_after_cold"]
    final = results["final_metrics"]
    loads = metrics.get("polyhost_model_loading_time_microseconds_count", 0) or 1
    download_ms = metrics.get("polyhost_model_downloading_time_microseconds_sum", 0) / loads / 1e3
    load_ms = metrics.get("polyhost_model_loading_time_microseconds_sum", 0) / loads / 1e3
    unloaded = int(metrics.get("polyhost_model_unloading_time_microseconds_count", 0))
    loaded = int(metrics.get("polyhost_loaded_models", 0))
    mib = 1024 * 1024
    rss_one, rss_peak = results["rss_one_model"], results["rss_peak"]
    bound = rss_one + plan.budget
    rounds = results["overhead_rounds_us"]
    added = statistics.median(r["mme"] - r["single"] for r in rounds)
    ratio = statistics.median(r["mme"] / r["single"] for r in rounds)
    section.add(
        *machine_lines(),
        "",
        f"{plan.models} models under `s3://models/mme/` on moto's S3 server "
        f"({results['archive_bytes']:,} bytes an archive; {PAD_BYTES // mib} MiB and ~5 KB of "
        f"weights in memory each), uploaded in {results['upload_s']:.1f} s. One "
        "`polyhost/sklearn` MultiModel container with "
        f"`POLYHOST_MULTI_MODEL_MEMORY_BYTES={plan.budget}` ({plan.budget / mib:.0f} MiB, "
        f"sized for about {plan.room} models). The first {plan.cold_models} models called in "
        "turn, each once cold; one request at a time on one keep-alive connection, a row of "
        "`load_digits`; every answer checked against the class its model answers.",
        "",
    )
    section.table(
        ["what", "p50 (ms)", "p99 (ms)", "calls"],
        [
            ["cold: first call of a model (S3, extract, load, invoke)",
             _ms(cold, 50), _ms(cold, 99), len(cold)],
            [f"warm: {plan.warm_models} loaded models in turn",
             _ms(warm, 50), _ms(warm, 99), len(warm)],
        ],
    )  # fmt: skip
    section.add(
        f"Of a cold call, on average: {download_ms:.1f} ms fetching and extracting "
        f"(ModelDownloadingTime), {load_ms:.1f} ms the container's `POST /models` "
        f"(ModelLoadingTime). The very first call, which also imports scikit-learn in the "
        f"container, took {results['cold_s'][0] * 1e3:.0f} ms.",
        "",
        f"After the cold pass: {loaded} models loaded, {unloaded} unloaded to make room "
        f"(LoadedModelCount and ModelUnloadingTime's count, from `/metrics`); cache misses "
        f"during the warm calls: {results['warm_misses']:.0f} (over the whole run "
        f"{final.get('polyhost_model_cache_hits_total', 0):.0f} hits, "
        f"{final.get('polyhost_model_cache_misses_total', 0):.0f} misses). The container's "
        "resident memory: "
        f"{results['rss_at_rest'] / mib:.0f} MiB with no model, {rss_one / mib:.0f} MiB with "
        f"one (scikit-learn imported), at most {rss_peak / mib:.0f} MiB during the cold pass "
        f"(one model plus the budget: {bound / mib:.0f} MiB). Same container process "
        f"throughout: {'yes' if results['same_container'] else 'NO (it restarted)'}.",
        "",
    )
    section.table(
        ["round", "single-model p50 (µs)", "TargetModel p50 (µs)", "added (µs)", "ratio"],
        [
            [n + 1, r["single"], r["mme"], r["mme"] - r["single"], r["mme"] / r["single"]]
            for n, r in enumerate(rounds)
        ],
    )
    section.target(
        "cold call p50, small sklearn model from local S3", f"{_ms(cold, 50):.1f} ms", "≤ 100 ms",
        _ms(cold, 50) <= 100,
    )  # fmt: skip
    section.target("cold call p99", f"{_ms(cold, 99):.1f} ms", "≤ 250 ms", _ms(cold, 99) <= 250)
    section.target(
        "warm TargetModel vs single-model endpoint, p50 added (median of rounds)",
        f"{added:+.0f} µs (ratio {ratio:.2f})",
        "≤ +50 µs",
        added <= 50,
    )
    section.target(
        "resident memory within one model plus the budget",
        f"{rss_peak / mib:.0f} MiB peak",
        f"≤ {bound / mib:.0f} MiB",
        rss_peak <= bound,
    )
    section.target(
        "every answer right, no container restart",
        f"{len(results['cold_s']) + len(warm)} checked, "
        f"{'same' if results['same_container'] else 'another'} container",
        "all right, same container",
        bool(results["same_container"]),
    )
    section.target(
        "the budget holds about the models it was sized for",
        f"{loaded} loaded after the cold pass",
        f"{plan.room // 2}-{plan.room * 2}",
        plan.room // 2 <= loaded <= plan.room * 2,
    )
