"""Scenario 19: inference components: routing overhead, placement time, and the routing strategy.

Three measures, all on the light echo container (bench/containers/echo.py), in one run:

- Overhead: the same container served by a single-model endpoint and as an inference
  component (one copy) of an endpoint for components; wrk, one connection, 1 KB bodies, the two
  alternately for several rounds. The target is the component's extra p50 (median of rounds).
- Placement: 50 components of 1 to 4 copies (125 copies) created at once on an endpoint of 8
  ml.m5.4xlarge instances; the time from the first CreateInferenceComponent to the last
  component InService, then to all deleted.
- Strategy: one component of four copies, one of which is slow (the copy that claims a file
  first adds ECHO_SLOW_MS to every answer), on an endpoint routing LEAST_OUTSTANDING_REQUESTS
  and on one routing RANDOM; wrk with 8 connections. Least outstanding requests sends less
  to the slow copy, which shows in p99.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.checks import expect_ok
from bench.context import Context
from bench.loadgen import Latency, wrk_run
from bench.payloads import SIZES, write_bodies
from bench.polyhost_server import ECHO_IMAGE, PolyhostServer
from bench.report import Section

KEY = "components"
TITLE = "19. Inference components: routing overhead, placement, routing strategy"
CONTENT_TYPE = "application/json"
COMPONENT_HEADER = "X-Amzn-SageMaker-Inference-Component"
SLOW_MS = 20


def _endpoint_for_components(
    sagemaker: Any, name: str, instances: int, instance_type: str, strategy: str | None = None
) -> None:
    variant: dict[str, Any] = {
        "VariantName": "AllTraffic",
        "InstanceType": instance_type,
        "InitialInstanceCount": instances,
    }
    if strategy is not None:
        variant["RoutingConfig"] = {"RoutingStrategy": strategy}
    sagemaker.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    _wait(lambda: sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"], name)


def _wait(status: Any, what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        now = status()
        if now == "InService":
            return
        if now == "Failed" or time.monotonic() > deadline:
            raise RuntimeError(f"{what}: {now}")
        time.sleep(0.01)


def _component(
    sagemaker: Any,
    name: str,
    endpoint: str,
    copies: int,
    environment: dict[str, str] | None = None,
) -> None:
    sagemaker.create_inference_component(
        InferenceComponentName=name,
        EndpointName=endpoint,
        VariantName="AllTraffic",
        Specification={
            "Container": {"Image": ECHO_IMAGE, "Environment": environment or {}},
            "ComputeResourceRequirements": {
                "NumberOfCpuCoresRequired": 0.25,
                "MinMemoryRequiredInMb": 256,
            },
        },
        RuntimeConfig={"CopyCount": copies},
    )


def _component_status(sagemaker: Any, name: str) -> str:
    found = sagemaker.describe_inference_component(InferenceComponentName=name)
    if found["RuntimeConfig"]["CurrentCopyCount"] != found["RuntimeConfig"]["DesiredCopyCount"]:
        return "short"
    status: str = found["InferenceComponentStatus"]
    return status


def _overhead(ctx: Context, server: PolyhostServer, body: Any) -> dict[str, list[Latency]]:
    sagemaker = server.sagemaker()
    server.deploy("bench-single", [{"Image": ECHO_IMAGE}])
    _endpoint_for_components(sagemaker, "bench-ic", 1, "ml.m5.large")
    _component(sagemaker, "bench-echo", "bench-ic", 1)
    _wait(lambda: _component_status(sagemaker, "bench-echo"), "bench-echo")
    targets = {
        "single-model endpoint": (server.invocations_url("bench-single"), {}),
        "inference component": (
            server.invocations_url("bench-ic"),
            {COMPONENT_HEADER: "bench-echo"},
        ),
    }
    for url, headers in targets.values():
        expect_ok(url, body.read_bytes(), CONTENT_TYPE, headers, same_body=True)
    rounds = 2 if ctx.quick else 5
    seconds = 1.0 if ctx.quick else 3.0
    results: dict[str, list[Latency]] = {label: [] for label in targets}
    for index in range(rounds):
        order = list(targets.items()) if index % 2 == 0 else list(reversed(targets.items()))
        for label, (url, headers) in order:
            results[label].append(
                wrk_run(url, body, CONTENT_TYPE, headers, connections=1, duration_s=seconds)
            )
    return results


def _placement(ctx: Context, server: PolyhostServer) -> dict[str, float]:
    sagemaker = server.sagemaker()
    count = 10 if ctx.quick else 50
    _endpoint_for_components(sagemaker, "bench-place", 8, "ml.m5.4xlarge")
    names = [f"place-{index}" for index in range(count)]
    copies = [1 + index % 4 for index in range(count)]
    started = time.perf_counter()
    for name, wanted in zip(names, copies, strict=True):
        _component(sagemaker, name, "bench-place", wanted)
    created = time.perf_counter() - started
    for name in names:
        _wait(lambda name=name: _component_status(sagemaker, name), name)
    in_service = time.perf_counter() - started
    started = time.perf_counter()
    for name in names:
        sagemaker.delete_inference_component(InferenceComponentName=name)
    deleted = time.perf_counter() - started
    return {
        "components": float(count),
        "copies": float(sum(copies)),
        "create_calls_s": created,
        "all_in_service_s": in_service,
        "delete_calls_s": deleted,
    }


def _strategies(ctx: Context, server: PolyhostServer, body: Any) -> dict[str, Latency]:
    sagemaker = server.sagemaker()
    seconds = 2.0 if ctx.quick else 8.0
    results: dict[str, Latency] = {}
    for strategy in ("LEAST_OUTSTANDING_REQUESTS", "RANDOM"):
        endpoint = f"bench-{strategy.lower().replace('_', '-')}"
        _endpoint_for_components(sagemaker, endpoint, 4, "ml.m5.large", strategy)
        claim = server.work / f"slow-{strategy}"
        claim.unlink(missing_ok=True)
        component = f"{endpoint}-echo"
        _component(
            sagemaker,
            component,
            endpoint,
            4,
            {"ECHO_SLOW_CLAIM": str(claim), "ECHO_SLOW_MS": str(SLOW_MS)},
        )
        _wait(lambda component=component: _component_status(sagemaker, component), component)
        results[strategy] = wrk_run(
            server.invocations_url(endpoint),
            body,
            CONTENT_TYPE,
            {COMPONENT_HEADER: component},
            connections=8,
            duration_s=seconds,
        )
    return results


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    body = write_bodies(work / "bodies", {"1KB": SIZES["1KB"]})["1KB"]
    with PolyhostServer(work / "polyhost") as server:
        overhead = _overhead(ctx, server, body)
        print(f"  {KEY}: overhead done", flush=True)
        placement = _placement(ctx, server)
        print(f"  {KEY}: placement done", flush=True)
        strategies = _strategies(ctx, server, body)
        print(f"  {KEY}: strategies done", flush=True)

    single, component = overhead["single-model endpoint"], overhead["inference component"]
    added = [(c.p50_ms - s.p50_ms) * 1000 for s, c in zip(single, component, strict=True)]
    section.add(
        f"Overhead: wrk, 1 connection, 1 KB, {len(single)} rounds alternating (each "
        "round's p50 in µs; the difference is per round, then its median).",
        "",
    )
    section.table(
        ["round", "single-model p50 µs", "component p50 µs", "added µs"],
        [
            [i + 1, round(s.p50_ms * 1000), round(c.p50_ms * 1000), round(d)]
            for i, (s, c, d) in enumerate(zip(single, component, added, strict=True))
        ],
    )
    median_added = statistics.median(added)
    section.target(
        "a component's routing overhead over a single-model endpoint (p50, c=1)",
        f"{median_added:+.0f} µs",
        "≤ +30 µs",
        median_added <= 30,
    )
    section.add(
        "",
        f"Placement: {placement['components']:.0f} components of 1 to 4 copies "
        f"({placement['copies']:.0f} copies, each 0.25 vCPU and 256 MiB) on 8 ml.m5.4xlarge "
        "instances, created one call after another.",
        "",
    )
    section.table(
        ["create calls s", "all InService s", "delete calls s"],
        [
            [
                f"{placement['create_calls_s']:.2f}",
                f"{placement['all_in_service_s']:.2f}",
                f"{placement['delete_calls_s']:.2f}",
            ]
        ],
    )
    section.add(
        "",
        f"Routing strategy: one component of 4 copies, one adding {SLOW_MS} ms to every "
        "answer; wrk, 8 connections.",
        "",
    )
    section.table(
        ["strategy", "req/s", "p50 ms", "p99 ms"],
        [
            [name, round(r.rps), f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}"]
            for name, r in strategies.items()
        ],
    )
    lor, rnd = strategies["LEAST_OUTSTANDING_REQUESTS"], strategies["RANDOM"]
    section.target(
        "least outstanding requests against random with one slow copy (p99)",
        f"{lor.p99_ms:.1f} ms against {rnd.p99_ms:.1f} ms",
        "lower than random",
        lor.p99_ms < rnd.p99_ms,
    )
    ctx.save_raw(
        KEY,
        {
            "overhead": {k: [vars(v) for v in vs] for k, vs in overhead.items()},
            "placement": placement,
            "strategies": {k: vars(v) for k, v in strategies.items()},
        },
    )
    return section
