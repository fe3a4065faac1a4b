"""Scenario 4: what each hop of a Serial pipeline adds, with 2, 5 and 15 light containers.

A Serial endpoint sends the client's body to the first container, its answer to the next, and
so on; with echo containers the 1 KB body travels unchanged through every hop. The baseline is
the same echo container called directly (one hop, no router), in the same run. Per-hop
overhead is (p50 of the pipeline - p50 direct) / N: everything the pipeline costs beyond one
direct call, spread over its N hops. It charges the router's entry and exit and the other
containers' own work to the hops, so it is an upper bound.
"""

from __future__ import annotations

import sys

from bench import plots
from bench.checks import expect_ok
from bench.context import Context
from bench.cpus import set_tree_affinity
from bench.loadgen import Latency, wrk_run
from bench.payloads import write_bodies
from bench.polyhost_server import ECHO_PROGRAM, PolyhostServer, echo_containers
from bench.procs import LOADGEN_CPUS, Service, free_port
from bench.report import Section

KEY = "serial-pipeline"
TITLE = "4. Serial pipeline: per-hop overhead"
CONTENT_TYPE = "application/json"


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    lengths = [2] if ctx.quick else [2, 5, 15]
    c1_seconds = 1.0 if ctx.quick else 4.0
    c32_seconds = 1.0 if ctx.quick else 4.0
    body = write_bodies(work / "bodies", {"1KB": 1024})["1KB"]
    port = free_port()
    echo = Service(
        "echo (direct)", [sys.executable, str(ECHO_PROGRAM), str(port)], work / "echo-direct.log"
    )
    direct_url = f"http://127.0.0.1:{port}/invocations"
    results: dict[int, dict[str, Latency]] = {}
    with echo, PolyhostServer(work / "polyhost") as server:
        echo.wait_http(f"http://127.0.0.1:{port}/ping")
        expect_ok(direct_url, body.read_bytes(), CONTENT_TYPE, same_body=True)
        assert server.service is not None
        for count in [0, *lengths]:  # 0: the direct baseline
            if count == 0:
                url, pid = direct_url, echo.pid
            else:
                name = f"bench-serial-{count}"
                server.deploy(name, echo_containers(count), mode="Serial")
                url, pid = server.invocations_url(name), server.service.pid
                expect_ok(url, body.read_bytes(), CONTENT_TYPE, same_body=True)
            set_tree_affinity(pid, [1])
            c1 = wrk_run(
                url, body, CONTENT_TYPE, connections=1, duration_s=c1_seconds, cpus=LOADGEN_CPUS
            )
            set_tree_affinity(pid, None)
            c32 = wrk_run(url, body, CONTENT_TYPE, connections=32, duration_s=c32_seconds)
            results[count] = {"c1": c1, "c32": c32}
            if count:
                server.delete(f"bench-serial-{count}")
            print(f"  {KEY}: {count or 'direct'} done", flush=True)

    base = results[0]["c1"]
    section.add(
        "1 KB JSON through Serial pipelines of echo containers. Latency in ms at concurrency 1 "
        "(wrk, 1 connection; load generator on CPU 0, serving side on CPU 1); throughput at "
        "concurrency 32 (wrk, nothing pinned). Per hop = (p50 - direct p50) / containers.",
        "",
    )
    rows: list[list[object]] = [
        [
            "direct (1 container, no router)",
            base.p50_ms,
            base.p99_ms,
            "-",
            results[0]["c32"].rps,
            results[0]["c32"].errors,
        ]
    ]
    for count in lengths:
        c1, c32 = results[count]["c1"], results[count]["c32"]
        per_hop = (c1.p50_ms - base.p50_ms) / count
        rows.append(
            [
                f"{count} containers",
                c1.p50_ms,
                c1.p99_ms,
                f"{per_hop:.3f}",
                c32.rps,
                c1.errors + c32.errors,
            ]
        )
        section.target(
            f"per-hop overhead, {count} containers", f"{per_hop:.3f} ms", "≤ 0.5 ms", per_hop <= 0.5
        )
    section.table(["pipeline", "p50 ms", "p99 ms", "per hop ms", "req/s at c=32", "errors"], rows)
    if len(lengths) > 1:
        first, last = lengths[0], lengths[-1]
        slope = (results[last]["c1"].p50_ms - results[first]["c1"].p50_ms) / (last - first)
        section.add(
            f"Marginal cost of one more container (slope of p50 from {first} to {last}): "
            f"{slope:.3f} ms, the echo container's own work included.",
            "",
        )
    ctx.save_raw(KEY, {n: {k: vars(v) for k, v in r.items()} for n, r in results.items()})
    path = ctx.plot(section, "serial-pipeline", "serial pipeline latency")
    fig, (left, right) = plots.figure(2)
    xs = [float(n) for n in lengths]
    plots.lines(
        left,
        "containers in the pipeline",
        "ms",
        "latency at concurrency 1",
        {
            "p50": (xs, [results[n]["c1"].p50_ms for n in lengths]),
            "p99": (xs, [results[n]["c1"].p99_ms for n in lengths]),
            "direct p50 (1 container)": (xs, [base.p50_ms for _ in lengths]),
        },
    )
    plots.lines(
        right,
        "containers in the pipeline",
        "requests/s",
        "throughput at c=32",
        {
            "polyhost Serial": (xs, [results[n]["c32"].rps for n in lengths]),
        },
    )
    plots.save(fig, path, "Serial pipelines of echo containers through polyhost")
    return section
