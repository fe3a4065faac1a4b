"""Scenario 5: density and cold start with 1, 2, 5 and 15 light containers on one endpoint.

For each size a Direct endpoint of echo containers is created with boto3 and timed from the
CreateEndpoint call to the first DescribeEndpoint (polled every 10 ms) that says InService, twice
(the second start finds the interpreter's files in the page cache). Memory is the RSS of the
server process and of its whole process tree (server plus containers), read with psutil. Load
is wrk at concurrency 32, its requests rotating over every container's hostname; polyhost's own
`/metrics` counters confirm how evenly they were spread.
"""

from __future__ import annotations

import re
import urllib.request
from dataclasses import asdict, dataclass

from bench import plots
from bench.checks import expect_ok
from bench.context import Context
from bench.loadgen import Latency, wrk_run
from bench.payloads import write_bodies
from bench.polyhost_server import HOSTNAME_HEADER, PolyhostServer, echo_containers
from bench.report import Section

KEY = "density"
TITLE = "5. Density and cold start"
CONTENT_TYPE = "application/json"
MB = 1024 * 1024


def _invocations(server: PolyhostServer, endpoint: str) -> dict[str, float]:
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=10) as answer:
        text = answer.read().decode()
    counts: dict[str, float] = {}
    pattern = re.compile(r"^polyhost_invocations(?:_total)?\{([^}]*)\} ([0-9.e+]+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if match and f'endpoint_name="{endpoint}"' in match.group(1):
            name = re.search(r'container_name="([^"]*)"', match.group(1))
            if name:
                counts[name.group(1)] = counts.get(name.group(1), 0.0) + float(match.group(2))
    return counts


@dataclass
class Density:
    containers: int
    cold_start_s: list[float]
    server_rss: int
    total_rss: int
    load: Latency
    per_container: list[float]


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    sizes = [1, 2] if ctx.quick else [1, 2, 5, 15]
    repeats = 1 if ctx.quick else 2
    seconds = 1.0 if ctx.quick else 6.0
    body = write_bodies(work / "bodies", {"1KB": 1024})["1KB"]
    rows: list[list[object]] = []
    raw: dict[int, Density] = {}
    with PolyhostServer(work / "polyhost") as server:
        idle_own, idle_total = server.rss()
        for count in sizes:
            name = f"bench-density-{count}"
            starts: list[float] = []
            for attempt in range(repeats):
                starts.append(server.deploy(name, echo_containers(count), mode="Direct"))
                if attempt < repeats - 1:
                    server.delete(name)
                    client = server.sagemaker()
                    client.delete_endpoint_config(EndpointConfigName=name)
                    client.delete_model(ModelName=name)
            hostnames = [f"echo{i}" for i in range(1, count + 1)]
            url = server.invocations_url(name)
            for host in hostnames:
                expect_ok(
                    url, body.read_bytes(), CONTENT_TYPE, {HOSTNAME_HEADER: host}, same_body=True
                )
            own, total = server.rss()
            before = _invocations(server, name)
            load: Latency = wrk_run(
                url,
                body,
                CONTENT_TYPE,
                connections=32,
                duration_s=seconds,
                rotate=(HOSTNAME_HEADER, hostnames),
            )
            after = _invocations(server, name)
            served = [after.get(h, 0.0) - before.get(h, 0.0) for h in hostnames]
            spread = f"{min(served):.0f}-{max(served):.0f}" if served else "-"
            server.delete(name)
            raw[count] = Density(count, starts, own, total, load, served)
            rows.append(
                [
                    count,
                    min(starts),
                    max(starts),
                    own / MB,
                    total / MB,
                    (total - idle_total) / MB / count,
                    load.rps,
                    load.p50_ms,
                    load.p99_ms,
                    spread,
                    load.errors,
                ]
            )
            print(f"  {KEY}: {count} containers done", flush=True)
            for target_count, limit in ((2, 3.0), (15, 10.0)):
                if count == target_count:
                    section.target(
                        f"CreateEndpoint → InService, {count} light containers",
                        f"{max(starts):.2f} s (slowest of {repeats})",
                        f"≤ {limit:g} s",
                        max(starts) <= limit,
                    )

    section.add(
        f"Direct endpoints of N echo containers. Idle server (no endpoint): RSS "
        f"{idle_own / MB:.1f} MB. Cold start = CreateEndpoint → InService, fastest and slowest of "
        f"{repeats}. Memory after start-up. Load: wrk, concurrency 32, nothing pinned, requests "
        "spread over every container (requests per container from polyhost's `/metrics`).",
        "",
    )
    section.table(
        [
            "containers",
            "cold start s (min)",
            "cold start s (max)",
            "server RSS MB",
            "total RSS MB",
            "MB per container",
            "req/s",
            "p50 ms",
            "p99 ms",
            "requests per container (min-max)",
            "errors",
        ],
        rows,
    )
    ctx.save_raw(KEY, [asdict(d) for d in raw.values()])
    path = ctx.plot(section, "density", "density and cold start")
    fig, (left, middle, right) = plots.figure(3, width=14)
    xs = [float(n) for n in sizes]
    plots.lines(
        left,
        "containers",
        "seconds",
        "CreateEndpoint → InService",
        {
            "slowest": (xs, [max(raw[n].cold_start_s) for n in sizes]),
            "fastest": (xs, [min(raw[n].cold_start_s) for n in sizes]),
        },
    )
    plots.lines(
        middle,
        "containers",
        "MB",
        "resident memory",
        {
            "server": (xs, [raw[n].server_rss / MB for n in sizes]),
            "server + containers": (xs, [raw[n].total_rss / MB for n in sizes]),
        },
    )
    plots.lines(
        right,
        "containers",
        "requests/s",
        "throughput at c=32, spread evenly",
        {
            "polyhost": (xs, [raw[n].load.rps for n in sizes]),
        },
    )
    plots.save(fig, path, "Density: one endpoint with N echo containers")
    return section
