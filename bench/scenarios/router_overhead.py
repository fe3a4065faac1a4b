"""Scenario 1: what the router adds, against calling the same light container directly.

Two light containers, each run twice in the same run — started by polyhost behind one Direct
endpoint (one container each, picked with `X-Amzn-SageMaker-Target-Container-Hostname`), and
started here on its own port for the direct baseline:

- asyncio: `bench/containers/echo.py`, a bare asyncio protocol over httptools — about the least
  a Python container can cost per request; every body size runs against it.
- uvicorn: `bench/containers/echo_asgi.py`, a raw ASGI app on uvicorn, the server stack of
  polyhost's own serving stacks; 1 KB only.

Both sides get the same bodies from the same tools, alternately. Latency at concurrency 1 comes
from wrk with one connection (µs resolution; the targets use it) and from hey (whose output
has 0.1 ms resolution); throughput at concurrency 32 from wrk, in two CPU layouts:

- split: load generator on CPU 0, the serving side (container, or polyhost and its container)
  on CPU 1. The router and the container share one core, the strictest setting.
- shared: nothing pinned; every process may use both cores ("on 2 cores", the target's setting).

Where a target is missed, polyhost is profiled under the 1 KB c=32 load with py-spy and the
hottest frames are listed with file:line.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from bench import plots, profile
from bench.checks import expect_ok
from bench.context import Context
from bench.cpus import set_tree_affinity
from bench.loadgen import Latency, hey_latency, wrk_run
from bench.payloads import SIZES, write_bodies
from bench.polyhost_server import (
    ECHO_ASGI_IMAGE,
    ECHO_ASGI_PROGRAM,
    ECHO_IMAGE,
    ECHO_PROGRAM,
    HOSTNAME_HEADER,
    PolyhostServer,
)
from bench.procs import LOADGEN_CPUS, Service, free_port
from bench.report import Section

KEY = "router-overhead"
TITLE = "1. Router overhead (light container, direct vs through polyhost)"
CONTENT_TYPE = "application/json"
ENDPOINT = "bench-echo"
MEASURES = ("hey_c1", "wrk_c1", "wrk_c32_split", "wrk_c32_shared")


@dataclass(frozen=True)
class Container:
    label: str
    image: str
    program: Path
    sizes: tuple[str, ...]


CONTAINERS = (
    Container("asyncio", ECHO_IMAGE, ECHO_PROGRAM, ("1KB", "64KB", "1MB")),
    Container("uvicorn", ECHO_ASGI_IMAGE, ECHO_ASGI_PROGRAM, ("1KB",)),
)

# results[container][size][system][measure]
Results = dict[str, dict[str, dict[str, dict[str, Latency]]]]


@dataclass(frozen=True)
class Target:
    url: str
    headers: dict[str, str]
    pid: int


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    containers = CONTAINERS[:1] if ctx.quick else CONTAINERS
    wanted = {"1KB"} if ctx.quick else {size for c in containers for size in c.sizes}
    hey_requests = {"1KB": 200} if ctx.quick else {"1KB": 4000, "64KB": 2000, "1MB": 300}
    c1_seconds = 1.0 if ctx.quick else 4.0
    c32_seconds = 1.0 if ctx.quick else 5.0
    bodies = write_bodies(work / "bodies", {k: v for k, v in SIZES.items() if k in wanted})

    directs = {
        c.label: Service(
            f"{c.label} echo (direct)",
            [sys.executable, str(c.program), str(free_port())],
            work / f"direct-{c.label}.log",
        )
        for c in containers
    }
    server = PolyhostServer(work / "polyhost")
    raw: Results = {}
    try:
        for service in directs.values():
            service.start()
        server.start()
        assert server.service is not None
        server.deploy(
            ENDPOINT,
            [{"Image": c.image, "ContainerHostname": f"echo-{c.label}"} for c in containers],
            mode="Direct",
        )
        for container in containers:
            direct = directs[container.label]
            port = direct.command[-1]
            direct.wait_http(f"http://127.0.0.1:{port}/ping")
            systems = {
                "direct": Target(f"http://127.0.0.1:{port}/invocations", {}, direct.pid),
                "polyhost": Target(
                    server.invocations_url(ENDPOINT),
                    {HOSTNAME_HEADER: f"echo-{container.label}"},
                    server.service.pid,
                ),
            }
            for target in systems.values():
                expect_ok(
                    target.url,
                    bodies["1KB"].read_bytes(),
                    CONTENT_TYPE,
                    target.headers,
                    same_body=True,
                )
            raw[container.label] = {}
            for size in container.sizes:
                if size not in bodies:
                    continue
                raw[container.label][size] = _measure(
                    systems, bodies[size], hey_requests[size], c1_seconds, c32_seconds
                )
                print(f"  {KEY}: {container.label} {size} done", flush=True)

        _tables(section, raw)
        for label in raw:
            _targets(section, label, raw[label])
        missed = any(not t.met for t in section.targets)
        if (missed or ctx.profile) and not ctx.quick:
            hot, own = _profile(work, server, bodies["1KB"], c32_seconds)
            _hotspot_table(section, hot, own)
    finally:
        server.stop()
        for service in directs.values():
            service.stop()

    ctx.save_raw(
        KEY,
        {
            c: {
                s: {sy: {m: vars(v) for m, v in ms.items()} for sy, ms in r.items()}
                for s, r in sizes.items()
            }
            for c, sizes in raw.items()
        },
    )
    _plot(ctx, section, raw)
    return section


def _measure(
    systems: dict[str, Target], body: Path, requests: int, c1_seconds: float, c32_seconds: float
) -> dict[str, dict[str, Latency]]:
    """Every measure of one body size, the two systems alternately for each."""
    results: dict[str, dict[str, Latency]] = {name: {} for name in systems}
    for target in systems.values():  # split layout: serving side on CPU 1
        set_tree_affinity(target.pid, [1])
    for name, t in systems.items():
        results[name]["hey_c1"] = hey_latency(
            t.url, body, CONTENT_TYPE, t.headers, requests, cpus=LOADGEN_CPUS
        )
    for name, t in systems.items():
        results[name]["wrk_c1"] = wrk_run(
            t.url,
            body,
            CONTENT_TYPE,
            t.headers,
            connections=1,
            duration_s=c1_seconds,
            cpus=LOADGEN_CPUS,
        )
    for name, t in systems.items():
        results[name]["wrk_c32_split"] = wrk_run(
            t.url,
            body,
            CONTENT_TYPE,
            t.headers,
            connections=32,
            duration_s=c32_seconds,
            cpus=LOADGEN_CPUS,
        )
    for target in systems.values():  # shared layout: nothing pinned
        set_tree_affinity(target.pid, None)
    for name, t in systems.items():
        results[name]["wrk_c32_shared"] = wrk_run(
            t.url, body, CONTENT_TYPE, t.headers, connections=32, duration_s=c32_seconds
        )
    return results


def _tables(section: Section, raw: Results) -> None:
    section.add(
        "The same echo container called directly and through polyhost (Direct mode), JSON "
        "bodies. Latency in ms at concurrency 1 (load generator on CPU 0, serving side on "
        "CPU 1); added = polyhost - direct. wrk: one connection, µs resolution; hey: -c 1, "
        "0.1 ms resolution.",
        "",
    )
    rows: list[list[object]] = []
    for label, sizes in raw.items():
        for size, r in sizes.items():
            d, p = r["direct"], r["polyhost"]
            rows.append(
                [
                    label,
                    size,
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
            "container",
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
    for label, sizes in raw.items():
        for size, r in sizes.items():
            for layout in ("split", "shared"):
                dl, pl = r["direct"][f"wrk_c32_{layout}"], r["polyhost"][f"wrk_c32_{layout}"]
                rows.append(
                    [
                        label,
                        size,
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
            "container",
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


def _targets(section: Section, label: str, sizes: dict[str, dict[str, dict[str, Latency]]]) -> None:
    results = sizes.get("1KB")
    if results is None:
        return
    d, p = results["direct"], results["polyhost"]
    added_p50 = p["wrk_c1"].p50_ms - d["wrk_c1"].p50_ms
    added_p99 = p["wrk_c1"].p99_ms - d["wrk_c1"].p99_ms
    ratio = p["wrk_c32_shared"].rps / d["wrk_c32_shared"].rps
    section.target(
        f"{label} container: added p50 at 1 KB, c=1",
        f"{added_p50:.3f} ms",
        "≤ 0.3 ms",
        added_p50 <= 0.3,
    )
    section.target(
        f"{label} container: added p99 at 1 KB, c=1",
        f"{added_p99:.3f} ms",
        "≤ 1 ms",
        added_p99 <= 1.0,
    )
    section.target(
        f"{label} container: throughput through polyhost vs direct at 1 KB, c=32, 2 cores (shared)",
        f"{100 * ratio:.0f}%",
        "≥ 50%",
        ratio >= 0.5,
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
        {HOSTNAME_HEADER: "echo-asyncio"},
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
        "Profile of the polyhost server under the 1 KB c=32 load on the asyncio container "
        "(py-spy, 250 Hz, nothing pinned; raw stacks in "
        "`bench/work/router-overhead/polyhost-profile.txt`): share of the busy samples whose "
        "innermost frame is this one (self) and that have it anywhere on the stack (total). "
        "Time in a system call (socket writes, epoll) counts to the Python frame that made it.",
        "",
    )
    section.table(
        ["frame (self time)", "self", "total"],
        [[h.frame, f"{h.self_pct:.1f}%", f"{h.total_pct:.1f}%"] for h in hot],
    )
    section.add("polyhost's own functions by inclusive share:", "")
    section.table(["polyhost frame", "total"], [[f, f"{pct:.1f}%"] for f, pct in own])


def _plot(ctx: Context, section: Section, raw: Results) -> None:
    path = ctx.plot(section, "router-overhead", "router overhead")
    groups = [(c, s) for c, sizes in raw.items() for s in sizes]
    labels = [f"{c}\n{s}" for c, s in groups]

    def series(system: str, measure: str, attribute: str) -> list[float]:
        return [float(getattr(raw[c][s][system][measure], attribute)) for c, s in groups]

    fig, (left, right) = plots.figure(2, width=13)
    plots.grouped_bars(
        left,
        labels,
        {
            "direct p50": series("direct", "wrk_c1", "p50_ms"),
            "polyhost p50": series("polyhost", "wrk_c1", "p50_ms"),
            "direct p99": series("direct", "wrk_c1", "p99_ms"),
            "polyhost p99": series("polyhost", "wrk_c1", "p99_ms"),
        },
        "ms (log)",
        "latency at concurrency 1 (wrk, 1 connection)",
        log=True,
    )
    plots.grouped_bars(
        right,
        labels,
        {
            "direct, shared": series("direct", "wrk_c32_shared", "rps"),
            "polyhost, shared": series("polyhost", "wrk_c32_shared", "rps"),
            "direct, split": series("direct", "wrk_c32_split", "rps"),
            "polyhost, split": series("polyhost", "wrk_c32_split", "rps"),
        },
        "requests/s (log)",
        "throughput at concurrency 32 (wrk)",
        log=True,
    )
    plots.save(fig, path, "Router overhead: echo containers direct vs through polyhost")
