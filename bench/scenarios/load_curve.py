"""Scenario 6: latency against offered load, up to saturation, for a 2-container endpoint.

A Direct endpoint with two `polyhost/sklearn` containers (the digits model of scenario 2 in
both; requests alternate between their hostnames). First a closed-loop wrk run at concurrency
32 finds the saturation throughput; then the open-loop generator (`bench/openloop.py`, pinned
to CPU 0) offers fixed rates from 10% to beyond that, each for a few seconds. Latency counts
from when a request was due, so queueing shows: below saturation the curve is flat, past it
latency climbs and the achieved rate stops following the offered one.
"""

from __future__ import annotations

import json

from bench import plots
from bench.checks import expect_ok
from bench.context import Context
from bench.loadgen import OpenLoopResult, open_loop, wrk_run
from bench.models import digits
from bench.polyhost_server import HOSTNAME_HEADER, PolyhostServer
from bench.procs import LOADGEN_CPUS
from bench.report import Section

KEY = "load-curve"
TITLE = "6. Latency vs offered load (2-container endpoint)"
ENDPOINT = "digits-pair"
HOSTS = ["digits-a", "digits-b"]


def _errors(point: OpenLoopResult) -> str:
    if not point.errors:
        return "0"
    kinds = ", ".join(f"{n}x {k}" for k, n in sorted(point.error_kinds.items()))
    return f"{point.errors} ({kinds})"


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    model = digits(work / "model")
    body = work / "invoke.json"
    body.write_text(json.dumps(model.rows), encoding="utf-8")
    fractions = [0.25, 1.2] if ctx.quick else [0.1, 0.25, 0.5, 0.7, 0.85, 1.0, 1.15, 1.3, 1.5, 1.75]
    seconds = 1.0 if ctx.quick else 5.0
    points: list[OpenLoopResult] = []
    with PolyhostServer(work / "polyhost") as server:
        containers = [
            {"Image": "polyhost/sklearn", "ModelDataUrl": model.url, "ContainerHostname": host}
            for host in HOSTS
        ]
        cold = server.deploy(ENDPOINT, containers, mode="Direct")
        url = server.invocations_url(ENDPOINT)
        for host in HOSTS:
            expect_ok(url, body.read_bytes(), "application/json", {HOSTNAME_HEADER: host})
        closed = wrk_run(
            url,
            body,
            "application/json",
            connections=32,
            duration_s=1.0 if ctx.quick else 5.0,
            rotate=(HOSTNAME_HEADER, HOSTS),
        )
        peak = closed.rps
        for fraction in fractions:
            rate = max(10.0, round(peak * fraction, -1))
            point = open_loop(
                url,
                body,
                "application/json",
                rate,
                seconds,
                rotate=(HOSTNAME_HEADER, HOSTS),
                cpus=LOADGEN_CPUS,
            )
            points.append(point)
            print(
                f"  {KEY}: offered {rate:.0f}/s → {point.achieved_rps:.0f}/s, "
                f"p99 {point.p99_ms:.1f} ms",
                flush=True,
            )
            if point.achieved_rps < 0.7 * rate and fraction >= 1.0:
                break  # well past saturation: more only grows the queue

    section.add(
        f"Two `polyhost/sklearn` containers on one Direct endpoint (InService {cold:.2f} s after "
        f"CreateEndpoint), one `load_digits` row per request alternating between them. Closed "
        f"loop (wrk, c=32): {peak:,.0f} req/s, p50 {closed.p50_ms:.2f} ms, p99 "
        f"{closed.p99_ms:.2f} ms. Open loop, {seconds:g} s per rate, generator on CPU 0, "
        "latency in ms from each request's due time:",
        "",
    )
    section.table(
        ["offered req/s", "achieved req/s", "p50", "p90", "p99", "max", "not served"],
        [
            [p.offered_rps, p.achieved_rps, p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms, _errors(p)]
            for p in points
        ],
    )
    section.add(
        "Not served: answers other than 200 by status (polyhost answers 503 at once when a "
        "container already has `--max-inflight` requests in flight, 64 by default, instead of "
        "queueing without bound) and failed connections. Latency percentiles are of the "
        "requests served.",
        "",
    )
    sustained = [
        p
        for p in points
        if p.errors == 0 and p.achieved_rps >= 0.97 * p.offered_rps and p.p99_ms < 100
    ]
    if sustained:
        best = max(sustained, key=lambda p: p.offered_rps)
        section.add(
            f"Highest offered rate served in full (every request answered 200, p99 under "
            f"100 ms): "
            f"{best.offered_rps:,.0f} req/s (p99 {best.p99_ms:.1f} ms).",
            "",
        )
    ctx.save_raw(KEY, {"closed_loop": vars(closed), "points": [vars(p) for p in points]})
    path = ctx.plot(section, "load-curve", "latency vs offered load")
    fig, (left, right) = plots.figure(2)
    offered = [p.offered_rps for p in points]
    plots.lines(
        left,
        "offered requests/s",
        "ms (log)",
        "latency vs offered rate (open loop)",
        {
            "p50": (offered, [p.p50_ms for p in points]),
            "p90": (offered, [p.p90_ms for p in points]),
            "p99": (offered, [p.p99_ms for p in points]),
        },
        log_y=True,
    )
    plots.lines(
        right,
        "offered requests/s",
        "achieved requests/s",
        "throughput",
        {
            "achieved": (offered, [p.achieved_rps for p in points]),
            "offered (ideal)": (offered, offered),
        },
    )
    plots.save(fig, path, "2-container polyhost/sklearn endpoint: latency vs load")
    return section
