"""Scenario 1: what the router adds, against calling the same light container directly.

The echo container (`bench/containers/echo.py`) runs twice: once started by polyhost behind a
Direct-mode endpoint, once started here on its own port. Both get the same bodies from the same
tools in the same run, alternately. Latency at concurrency 1 comes from hey (0.1 ms resolution)
and wrk with one connection (µs resolution; the targets use it); throughput at concurrency 32
from wrk, in two CPU layouts:

- split: load generator on CPU 0, the serving side (container, or polyhost and its container)
  on CPU 1. The router and the container share one core, the strictest setting.
- shared: nothing pinned; every process may use both cores ("on 2 cores", the target's setting).

Where a target is missed, polyhost is profiled under the 1 KB c=32 load with py-spy and the
hottest frames are listed with file:line.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench import plots, profile
from bench.checks import expect_ok
from bench.context import Context
from bench.cpus import set_tree_affinity
from bench.loadgen import Latency, hey_latency, wrk_run
from bench.payloads import SIZES, write_bodies
from bench.polyhost_server import ECHO_PROGRAM, HOSTNAME_HEADER, PolyhostServer, echo_containers
from bench.procs import LOADGEN_CPUS, Service, free_port
from bench.report import Section

KEY = "router-overhead"
TITLE = "1. Router overhead (light container, direct vs through polyhost)"
CONTENT_TYPE = "application/json"
ENDPOINT = "bench-echo"


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    sizes = {"1KB": SIZES["1KB"]} if ctx.quick else SIZES
    hey_requests = {"1KB": 200} if ctx.quick else {"1KB": 4000, "64KB": 2000, "1MB": 300}
    c1_seconds = 1.0 if ctx.quick else 4.0
    c32_seconds = 1.0 if ctx.quick else 6.0
    bodies = write_bodies(work / "bodies", sizes)

    port = free_port()
    echo = Service(
        "echo (direct)", [sys.executable, str(ECHO_PROGRAM), str(port)], work / "echo-direct.log"
    )
    server = PolyhostServer(work / "polyhost")
    raw: dict[str, dict[str, dict[str, Latency]]] = {}
    with echo, server:
        echo.wait_http(f"http://127.0.0.1:{port}/ping")
        server.deploy(ENDPOINT, echo_containers(1), mode="Direct")
        systems: dict[str, tuple[str, dict[str, str], int]] = {
            "direct": (f"http://127.0.0.1:{port}/invocations", {}, echo.pid),
            "polyhost": (
                server.invocations_url(ENDPOINT),
                {HOSTNAME_HEADER: "echo1"},
                server.service.pid,  # type: ignore[union-attr]
            ),
        }
        for url, headers, _ in systems.values():
            expect_ok(url, bodies["1KB"].read_bytes(), CONTENT_TYPE, headers, same_body=True)

        for label, body in bodies.items():
            results: dict[str, dict[str, Latency]] = {name: {} for name in systems}
            # split layout: load generator on CPU 0, serving side on CPU 1
            for _, _, pid in systems.values():
                set_tree_affinity(pid, [1])
            for name, (url, headers, _) in systems.items():
                results[name]["hey_c1"] = hey_latency(
                    url, body, CONTENT_TYPE, headers, hey_requests[label], cpus=LOADGEN_CPUS
                )
            for name, (url, headers, _) in systems.items():
                results[name]["wrk_c1"] = wrk_run(
                    url,
                    body,
                    CONTENT_TYPE,
                    headers,
                    connections=1,
                    duration_s=c1_seconds,
                    cpus=LOADGEN_CPUS,
                )
            for name, (url, headers, _) in systems.items():
                results[name]["wrk_c32_split"] = wrk_run(
                    url,
                    body,
                    CONTENT_TYPE,
                    headers,
                    connections=32,
                    duration_s=c32_seconds,
                    cpus=LOADGEN_CPUS,
                )
            # shared layout: nothing pinned
            for _, _, pid in systems.values():
                set_tree_affinity(pid, None)
            for name, (url, headers, _) in systems.items():
                results[name]["wrk_c32_shared"] = wrk_run(
                    url,
                    body,
                    CONTENT_TYPE,
                    headers,
                    connections=32,
                    duration_s=c32_seconds,
                )
            raw[label] = results
            print(f"  {KEY}: {label} done", flush=True)

        hot: list[profile.Hotspot] = []
        own: list[tuple[str, float]] = []
        _tables(section, raw)
        _targets(section, raw)
        missed = any(not t.met for t in section.targets)
        if (missed or ctx.profile) and not ctx.quick:
            hot, own = _profile(work, server, bodies["1KB"], c32_seconds)
            _hotspot_table(section, hot, own)

    ctx.save_raw(
        KEY,
        {
            size: {s: {k: vars(v) for k, v in r.items()} for s, r in res.items()}
            for size, res in raw.items()
        },
    )
    _plot(ctx, section, raw)
    return section


def _tables(section: Section, raw: dict[str, dict[str, dict[str, Latency]]]) -> None:
    section.add(
        "The same echo container called directly and through polyhost (Direct mode, "
        "`X-Amzn-SageMaker-Target-Container-Hostname`), JSON bodies. Latency in ms at "
        "concurrency 1 (load generator on CPU 0, serving side on CPU 1); added = polyhost - "
        "direct.",
        "",
    )
    rows: list[list[object]] = []
    for label, results in raw.items():
        d, p = results["direct"], results["polyhost"]
        rows.append(
            [
                label,
                d["wrk_c1"].p50_ms,
                p["wrk_c1"].p50_ms,
                p["wrk_c1"].p50_ms - d["wrk_c1"].p50_ms,
                d["wrk_c1"].p99_ms,
                p["wrk_c1"].p99_ms,
                p["wrk_c1"].p99_ms - d["wrk_c1"].p99_ms,
                d["hey_c1"].p50_ms,
                p["hey_c1"].p50_ms,
                d["hey_c1"].p99_ms,
                p["hey_c1"].p99_ms,
            ]
        )
    section.table(
        [
            "body",
            "wrk p50 direct",
            "wrk p50 polyhost",
            "added p50",
            "wrk p99 direct",
            "wrk p99 polyhost",
            "added p99",
            "hey p50 direct",
            "hey p50 polyhost",
            "hey p99 direct",
            "hey p99 polyhost",
        ],
        rows,
    )
    section.add(
        "Throughput at concurrency 32 (wrk, 1 thread): requests/s and latency in ms. "
        "split = load generator on CPU 0, serving side on CPU 1; shared = nothing pinned.",
        "",
    )
    rows = []
    for label, results in raw.items():
        for layout in ("split", "shared"):
            dl = results["direct"][f"wrk_c32_{layout}"]
            pl = results["polyhost"][f"wrk_c32_{layout}"]
            rows.append(
                [
                    label,
                    layout,
                    dl.rps,
                    pl.rps,
                    f"{100 * pl.rps / dl.rps:.0f}%",
                    dl.p50_ms,
                    pl.p50_ms,
                    dl.p99_ms,
                    pl.p99_ms,
                    dl.errors + pl.errors,
                ]
            )
    section.table(
        [
            "body",
            "layout",
            "req/s direct",
            "req/s polyhost",
            "polyhost/direct",
            "p50 direct",
            "p50 polyhost",
            "p99 direct",
            "p99 polyhost",
            "errors",
        ],
        rows,
    )


def _targets(section: Section, raw: dict[str, dict[str, dict[str, Latency]]]) -> None:
    results = raw.get("1KB")
    if results is None:
        return
    d, p = results["direct"], results["polyhost"]
    added_p50 = p["wrk_c1"].p50_ms - d["wrk_c1"].p50_ms
    added_p99 = p["wrk_c1"].p99_ms - d["wrk_c1"].p99_ms
    ratio = p["wrk_c32_shared"].rps / d["wrk_c32_shared"].rps
    section.target("added p50 at 1 KB, c=1", f"{added_p50:.3f} ms", "≤ 0.3 ms", added_p50 <= 0.3)
    section.target("added p99 at 1 KB, c=1", f"{added_p99:.3f} ms", "≤ 1 ms", added_p99 <= 1.0)
    section.target(
        "throughput through polyhost vs direct at 1 KB, c=32, 2 cores (shared)",
        f"{100 * ratio:.0f}%",
        "≥ 50%",
        ratio >= 0.5,
    )
    split = p["wrk_c32_split"].rps / d["wrk_c32_split"].rps
    section.add(
        f"With the serving side held to one core (split) polyhost reaches {100 * split:.0f}% "
        "of direct: there the router and the container take turns on the same core, so the "
        "ratio is about container cost / (container cost + router cost).",
        "",
    )


def _profile(
    work: Path, server: PolyhostServer, body: Path, seconds: float
) -> tuple[list[profile.Hotspot], list[tuple[str, float]]]:
    out = work / "polyhost-profile.txt"
    assert server.service is not None
    sampler = profile.start(server.service.pid, seconds, out)
    if sampler is None:
        return [], []
    wrk_run(
        server.invocations_url(ENDPOINT),
        body,
        CONTENT_TYPE,
        {HOSTNAME_HEADER: "echo1"},
        connections=32,
        duration_s=seconds,
    )
    hot = profile.finish(sampler, out)
    collapsed = out.read_text(encoding="utf-8", errors="replace")
    return hot, profile.inclusive(collapsed, "polyhost/")


def _hotspot_table(
    section: Section, hot: list[profile.Hotspot], own: list[tuple[str, float]]
) -> None:
    if not hot:
        section.add("(py-spy is not installed: no profile taken.)", "")
        return
    section.add(
        "Profile of the polyhost server under the 1 KB c=32 load (py-spy, 250 Hz, "
        "`bench/work/router-overhead/polyhost-profile.txt`): share of the busy samples whose "
        "innermost frame is this one (self) and that have it anywhere on the stack (total).",
        "",
    )
    section.table(
        ["frame (self time)", "self", "total"],
        [[h.frame, f"{h.self_pct:.1f}%", f"{h.total_pct:.1f}%"] for h in hot],
    )
    section.add("polyhost's own functions by inclusive share:", "")
    section.table(["polyhost frame", "total"], [[f, f"{pct:.1f}%"] for f, pct in own])


def _plot(ctx: Context, section: Section, raw: dict[str, dict[str, dict[str, Latency]]]) -> None:
    path = ctx.plot(section, "router-overhead", "router overhead")
    labels = list(raw)
    fig, (left, right) = plots.figure(2)
    plots.grouped_bars(
        left,
        labels,
        {
            "direct p50": [raw[s]["direct"]["wrk_c1"].p50_ms for s in labels],
            "polyhost p50": [raw[s]["polyhost"]["wrk_c1"].p50_ms for s in labels],
            "direct p99": [raw[s]["direct"]["wrk_c1"].p99_ms for s in labels],
            "polyhost p99": [raw[s]["polyhost"]["wrk_c1"].p99_ms for s in labels],
        },
        "ms",
        "latency at concurrency 1 (wrk, 1 connection)",
        log=True,
    )
    plots.grouped_bars(
        right,
        labels,
        {
            "direct, shared": [raw[s]["direct"]["wrk_c32_shared"].rps for s in labels],
            "polyhost, shared": [raw[s]["polyhost"]["wrk_c32_shared"].rps for s in labels],
            "direct, split": [raw[s]["direct"]["wrk_c32_split"].rps for s in labels],
            "polyhost, split": [raw[s]["polyhost"]["wrk_c32_split"].rps for s in labels],
        },
        "requests/s",
        "throughput at concurrency 32 (wrk)",
        log=True,
    )
    plots.save(fig, path, "Router overhead: echo container direct vs through polyhost")
