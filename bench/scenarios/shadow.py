"""Scenario 22: what a shadow variant costs the caller.

The same light echo container (bench/containers/echo.py) served by an endpoint without a shadow
and by one whose ShadowProductionVariants runs a second echo container: wrk, one connection,
1 KB bodies, the two endpoints alternately for several rounds. The caller's p50 with the shadow
against without, per round (the difference, then its median): the target is issue 26's "a
shadow variant costs the caller ≤ +50 µs p50". Every copy the shadow was sent is checked to
have been served (its containers' invocation count on Prometheus), so the shadow's work really
happened beside the measured calls.
"""

from __future__ import annotations

import statistics
import time
import urllib.request
from typing import Any

from bench.checks import expect_ok
from bench.context import Context
from bench.loadgen import Latency, wrk_run
from bench.payloads import SIZES, write_bodies
from bench.polyhost_server import ECHO_IMAGE, ROLE, PolyhostServer
from bench.report import Section

KEY = "shadow"
TITLE = "22. Shadow variants: what the production caller pays"
CONTENT_TYPE = "application/json"


def _variant(name: str, model: str) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": model,
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
    }


def _deploy_shadowed(server: PolyhostServer, name: str) -> None:
    sagemaker = server.sagemaker()
    for model in (f"{name}-prod", f"{name}-shadow"):
        sagemaker.create_model(
            ModelName=model, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": ECHO_IMAGE}
        )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[_variant("prod", f"{name}-prod")],
        ShadowProductionVariants=[_variant("shadow", f"{name}-shadow")],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deadline = time.monotonic() + 300
    while (status := sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"]) != (
        "InService"
    ):
        if status == "Failed" or time.monotonic() > deadline:
            raise RuntimeError(f"{name}: {status}")
        time.sleep(0.01)


def _invocations(server: PolyhostServer, endpoint: str, variant: str) -> float:
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=30) as answer:
        lines = answer.read().decode().splitlines()
    labels = (f'endpoint_name="{endpoint}"', f'variant_name="{variant}"')
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("polyhost_invocations_total{") and all(x in line for x in labels)
    )


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    body = write_bodies(work / "bodies", {"1KB": SIZES["1KB"]})["1KB"]
    rounds = 2 if ctx.quick else 7
    seconds = 1.0 if ctx.quick else 3.0
    with PolyhostServer(work / "polyhost") as server:
        server.deploy("bench-plain", [{"Image": ECHO_IMAGE}])
        _deploy_shadowed(server, "bench-shadowed")
        targets = {
            "without a shadow": server.invocations_url("bench-plain"),
            "with a shadow": server.invocations_url("bench-shadowed"),
        }
        for url in targets.values():
            expect_ok(url, body.read_bytes(), CONTENT_TYPE, {}, same_body=True)
        results: dict[str, list[Latency]] = {label: [] for label in targets}
        for index in range(rounds):
            order = list(targets.items()) if index % 2 == 0 else list(reversed(targets.items()))
            for label, url in order:
                results[label].append(
                    wrk_run(url, body, CONTENT_TYPE, {}, connections=1, duration_s=seconds)
                )
        time.sleep(1.0)  # the last copies' answers
        production = _invocations(server, "bench-shadowed", "prod")
        shadowed = _invocations(server, "bench-shadowed", "shadow")

    plain, shadow = results["without a shadow"], results["with a shadow"]
    added = [(s.p50_ms - p.p50_ms) * 1000 for p, s in zip(plain, shadow, strict=True)]
    section.add(
        f"wrk, 1 connection, 1 KB, {rounds} rounds of {seconds:g} s alternating between an "
        "endpoint of the echo container and one whose shadow variant runs a second echo "
        "container (each round's p50 and p99 in µs; the difference is per round, then its "
        "median). Both endpoints on one server, measured in the same run.",
        "",
    )
    section.table(
        ["round", "without p50 µs", "with shadow p50 µs", "added µs", "without p99 µs",
         "with shadow p99 µs", "without req/s", "with shadow req/s"],
        [
            [i + 1, round(p.p50_ms * 1000), round(s.p50_ms * 1000), round(d),
             round(p.p99_ms * 1000), round(s.p99_ms * 1000), round(p.rps), round(s.rps)]
            for i, (p, s, d) in enumerate(zip(plain, shadow, added, strict=True))
        ],
    )  # fmt: skip
    section.add(
        "",
        f"Copies: the production variant served {production:.0f} requests, the shadow "
        f"{shadowed:.0f} copies ({100 * shadowed / max(production, 1):.1f}%; a copy is dropped "
        "only past the bounds in docs/shadow-variants.md).",
        "",
    )
    median_added = statistics.median(added)
    section.target(
        "a shadow variant's cost to the caller, p50 at c=1 (median of rounds)",
        f"{median_added:+.0f} µs (rounds {min(added):+.0f} to {max(added):+.0f})",
        "≤ +50 µs",
        median_added <= 50,
    )
    section.target(
        "every request's copy served by the shadow",
        f"{shadowed:.0f} of {production:.0f}",
        "all",
        shadowed >= production,
    )
    ctx.save_raw(
        KEY,
        {
            "rounds": {k: [vars(v) for v in vs] for k, vs in results.items()},
            "production": production,
            "shadow": shadowed,
        },
    )
    return section
