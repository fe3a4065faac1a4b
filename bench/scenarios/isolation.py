"""Scenario 8: a container held full does not slow its neighbour on the same endpoint.

A Direct endpoint has two containers: `b`, the light echo container, and `a`, a container that
takes every invocation and answers none until released (`bench/containers/stall.py`). b's
latency is measured alone, then while `a` holds as many requests as polyhost lets one container
have in flight (`--max-inflight`; that `a` is full is checked first: one more request to it must
be refused at once with a 503), then alone again after `a` let its requests go. What the held
requests cost `b` is the difference: nothing may queue behind them, so it should be the
router's bookkeeping of open upstream calls and little else.

The functional side (past the bound `a` refuses at once, `b` answers while `a` is held) is a
test, `tests/deploy/test_deployer.py`; this scenario keeps the latency numbers.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from bench import plots
from bench.checks import WrongAnswer, expect_ok, post
from bench.context import Context
from bench.cpus import set_tree_affinity
from bench.loadgen import Latency, wrk_run
from bench.payloads import write_bodies
from bench.polyhost_server import ECHO_IMAGE, HOSTNAME_HEADER, STALL_IMAGE, PolyhostServer
from bench.procs import LOADGEN_CPUS
from bench.report import Section

KEY = "isolation"
TITLE = "8. Isolation: a neighbour held full"
CONTENT_TYPE = "application/json"
ENDPOINT = "bench-isolation"
MAX_INFLIGHT = 64  # polyhost's default, given explicitly: the number of requests `a` holds
PHASES = ["b alone", "a held full", "b alone again"]


def _hold(server: PolyhostServer, count: int) -> list[socket.socket]:
    """`count` invocations of `a`, each on its own connection, left waiting for their answer."""
    request = (
        f"POST /endpoints/{ENDPOINT}/invocations HTTP/1.1\r\nHost: bench\r\n"
        f"{HOSTNAME_HEADER}: a\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: 2\r\n\r\n{{}}"
    ).encode()
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        sock.sendall(request)
        held.append(sock)
    return held


def _wait_count(path: Path, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip() == str(count):
            return
        time.sleep(0.02)
    raise WrongAnswer(f"the stall container does not hold {count} requests after {timeout:g} s")


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    c1_seconds = 1.0 if ctx.quick else 5.0
    c32_seconds = 1.0 if ctx.quick else 5.0
    body = write_bodies(work / "bodies", {"1KB": 1024})["1KB"]
    count_file, release_file = work / "held", work / "release"
    for leftover in (count_file, release_file):
        leftover.unlink(missing_ok=True)
    to_b = {HOSTNAME_HEADER: "b"}
    results: dict[str, dict[str, Latency]] = {}
    extra = ["--max-inflight", str(MAX_INFLIGHT), "--invocation-timeout", "3600"]
    with PolyhostServer(work / "polyhost", extra_args=extra) as server:
        assert server.service is not None
        stall = {
            "Image": STALL_IMAGE,
            "ContainerHostname": "a",
            "Environment": {
                "STALL_COUNT_FILE": str(count_file),
                "STALL_RELEASE_FILE": str(release_file),
            },
        }
        server.deploy(ENDPOINT, [{"Image": ECHO_IMAGE, "ContainerHostname": "b"}, stall], "Direct")
        url = server.invocations_url(ENDPOINT)
        expect_ok(url, body.read_bytes(), CONTENT_TYPE, to_b, same_body=True)
        held: list[socket.socket] = []
        try:
            for phase in PHASES:
                if phase == "a held full":
                    held = _hold(server, MAX_INFLIGHT)
                    _wait_count(count_file, MAX_INFLIGHT)
                    status, answer = post(url, b"{}", CONTENT_TYPE, {HOSTNAME_HEADER: "a"}, 30)
                    if status != 503:
                        raise WrongAnswer(f"a held full answered {status}: {answer[:300]!r}")
                elif held:
                    release_file.touch()
                    _wait_count(count_file, 0)
                    for sock in held:
                        sock.close()
                    held = []
                set_tree_affinity(server.service.pid, [1])
                c1 = wrk_run(
                    url,
                    body,
                    CONTENT_TYPE,
                    to_b,
                    connections=1,
                    duration_s=c1_seconds,
                    cpus=LOADGEN_CPUS,
                )
                set_tree_affinity(server.service.pid, None)
                c32 = wrk_run(url, body, CONTENT_TYPE, to_b, duration_s=c32_seconds)
                results[phase] = {"c1": c1, "c32": c32}
                print(f"  {KEY}: {phase} done", flush=True)
        finally:
            release_file.touch()
            for sock in held:
                sock.close()

    section.add(
        f"1 KB JSON to the echo container `b` of a Direct endpoint whose other container `a` "
        f'takes invocations and does not answer. "a held full": {MAX_INFLIGHT} requests to '
        f"`a` in flight (`--max-inflight {MAX_INFLIGHT}`; one more was refused with a 503 "
        "before measuring). Latency in ms at concurrency 1 (wrk, 1 connection; load generator "
        "on CPU 0, serving side on CPU 1); throughput at concurrency 32 (wrk, nothing pinned).",
        "",
    )
    rows: list[list[object]] = []
    for phase in PHASES:
        c1, c32 = results[phase]["c1"], results[phase]["c32"]
        rows.append(
            [phase, c1.p50_ms, c1.p99_ms, c32.rps, c32.p50_ms, c32.p99_ms, c1.errors + c32.errors]
        )
    section.table(
        ["phase", "p50 ms", "p99 ms", "req/s at c=32", "p50 ms c=32", "p99 ms c=32", "errors"],
        rows,
    )
    alone, held_full = results["b alone"]["c1"], results["a held full"]["c1"]
    ratio = held_full.p50_ms / alone.p50_ms
    section.target(
        "b's p50 at c=1 with a held full, relative to b alone",
        f"{ratio:.2f} times",
        "≤ 1.5 times",
        ratio <= 1.5,
    )
    errors = sum(r[k].errors for r in results.values() for k in ("c1", "c32"))
    section.target("errors answered to b", str(errors), "0", errors == 0)
    ctx.save_raw(KEY, {p: {k: vars(v) for k, v in r.items()} for p, r in results.items()})
    path = ctx.plot(section, KEY, "isolation from a neighbour held full")
    fig, (left, right) = plots.figure(2)
    plots.grouped_bars(
        left,
        PHASES,
        {
            "p50": [results[p]["c1"].p50_ms for p in PHASES],
            "p99": [results[p]["c1"].p99_ms for p in PHASES],
        },
        "ms",
        "b's latency at concurrency 1",
    )
    plots.grouped_bars(
        right,
        PHASES,
        {"req/s": [results[p]["c32"].rps for p in PHASES]},
        "requests/s",
        "b's throughput at c=32",
    )
    plots.save(fig, path, "A container held full and its neighbour, through polyhost")
    return section
