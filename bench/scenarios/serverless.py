"""Scenario 25: a serverless endpoint's cold and warm calls against a resident endpoint.

One `polyhost/sklearn` model (logistic regression on load_digits, one row per request) behind
two endpoints of one server started with a short `--serverless-idle-s`: a resident one (one
instance) and a serverless one (ServerlessConfig, no ProvisionedConcurrency). Each round waits
until the serverless endpoint has stopped its container (DescribeEndpoint's
CurrentInstanceCount 0), then times its first call (a cold start: the container is started,
imports scikit-learn, loads the model and answers), then warm calls to both endpoints,
alternating. Issue 26 asks for the numbers; there is no target beyond reporting them.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import boto3
from botocore.config import Config

from bench.context import Context
from bench.models import digits
from bench.polyhost_server import REGION, ROLE, PolyhostServer
from bench.report import Section

KEY = "serverless"
TITLE = "25. Serverless endpoints: cold start, warm calls, against a resident endpoint"
IDLE_S = 2


def _create(sagemaker: Any, name: str, url: str, serverless: bool) -> None:
    sagemaker.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "polyhost/sklearn", "ModelDataUrl": url},
    )
    variant: dict[str, Any] = {"VariantName": "AllTraffic", "ModelName": name}
    if serverless:
        variant["ServerlessConfig"] = {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    else:
        variant.update(InstanceType="ml.m5.large", InitialInstanceCount=1)
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deadline = time.monotonic() + 300
    while (status := sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"]) != (
        "InService"
    ):
        if status == "Failed" or time.monotonic() > deadline:
            raise RuntimeError(f"{name}: {status}")
        time.sleep(0.05)


def _instances(sagemaker: Any, name: str) -> int:
    described = sagemaker.describe_endpoint(EndpointName=name)
    return int(described["ProductionVariants"][0].get("CurrentInstanceCount", 0))


def _call_ms(runtime: Any, name: str, body: bytes) -> float:
    started = time.perf_counter()
    answer = runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json")
    answer["Body"].read()
    return (time.perf_counter() - started) * 1000


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    model = digits(work / "model")
    body = json.dumps(model.rows).encode()
    rounds = 2 if ctx.quick else 6
    warm_calls = 20 if ctx.quick else 200
    server = PolyhostServer(work / "polyhost", extra_args=["--serverless-idle-s", str(IDLE_S)])
    rows: list[list[Any]] = []
    with server:
        sagemaker = server.sagemaker()
        runtime = boto3.client(
            "sagemaker-runtime",
            endpoint_url=server.url,
            region_name=REGION,
            config=Config(retries={"max_attempts": 1}, read_timeout=300),
        )
        _create(sagemaker, "bench-resident", model.url, serverless=False)
        _create(sagemaker, "bench-serverless", model.url, serverless=True)
        for index in range(rounds):
            deadline = time.monotonic() + 120
            while _instances(sagemaker, "bench-serverless") != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("the serverless endpoint never stopped its container")
                time.sleep(0.2)
            cold = _call_ms(runtime, "bench-serverless", body)
            warm: list[float] = []
            resident: list[float] = []
            for _ in range(warm_calls):
                warm.append(_call_ms(runtime, "bench-serverless", body))
                resident.append(_call_ms(runtime, "bench-resident", body))
            rows.append([index + 1, cold, statistics.median(warm), statistics.median(resident)])
            print(f"  {KEY}: round {index + 1} cold {cold:.0f} ms", flush=True)

    section.add(
        f"One `polyhost/sklearn` model (load_digits, one row per request) behind a resident "
        f"endpoint (1 instance) and a serverless one (MemorySizeInMB 2048, MaxConcurrency 5, "
        f"no ProvisionedConcurrency) of one server with `--serverless-idle-s {IDLE_S}`. Each "
        "round waits until the serverless endpoint has stopped its container, times its first "
        f"call (cold), then {warm_calls} warm calls to each endpoint alternating (median). "
        "Latency as boto3 sees it, in ms.",
        "",
    )
    section.table(
        ["round", "serverless cold ms", "serverless warm p50 ms", "resident p50 ms"],
        [[r[0], f"{r[1]:.0f}", f"{r[2]:.2f}", f"{r[3]:.2f}"] for r in rows],
    )
    colds = [r[1] for r in rows]
    added = [r[2] - r[3] for r in rows]
    section.add(
        "",
        f"Cold start (median of rounds): {statistics.median(colds):.0f} ms "
        f"({min(colds):.0f}-{max(colds):.0f}); a warm serverless call against the resident "
        f"endpoint: {statistics.median(added):+.2f} ms (the serverless path skips the router's "
        "fast lane for its concurrency gate).",
        "",
    )
    section.target(
        "every cold call answered after the container had stopped",
        f"{len(colds)} of {rounds}",
        "all",
        len(colds) == rounds,
    )
    ctx.save_raw(KEY, {"rounds": rows})
    return section
