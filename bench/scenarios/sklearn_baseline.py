"""Scenario 13: polyhost/sklearn called directly against the one-process baseline app.

The same digits model (`bench.models.digits`, one LogisticRegression on `load_digits`) and the
same request, `{"instances": [one row of 64 floats]}`, to two programs: the baseline
(`bench/peers/baseline_app.py`: starlette under one uvicorn worker, orjson, the prediction
inline in the handler) and the `polyhost/sklearn` container program itself
(`python -m polyhost.stacks.sklearn`, started as the process backend starts it, no router in
front). Both run side by side for the whole scenario; each round measures one, then the other
(the order turns every round): wrk at c=32 (nothing pinned), then hey at c=1 (pinned to CPU
0), and the CPU time each server process spent per request under the c=32 load, from /proc.
The machine is shared, so the verdicts are on the median of the rounds' ratios, and every
round is shown.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.checks import expect_ok
from bench.context import Context
from bench.loadgen import Latency, hey_latency, wrk_run
from bench.models import digits
from bench.peers import baseline as peer
from bench.procs import LOADGEN_CPUS, Service, free_port
from bench.report import Section

KEY = "sklearn-baseline"
TITLE = "13. scikit-learn: the polyhost/sklearn container against the one-process baseline"
JSON = "application/json"


@dataclass
class Round:
    system: str
    c32: Latency
    c1: Latency
    cpu_us: float  # server CPU per request under the c=32 load


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (and its finished children), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def stack_service(model_dir: Path, work: Path) -> tuple[Service, str]:
    port = free_port()
    service = Service(
        "polyhost/sklearn",
        [sys.executable, "-m", "polyhost.stacks.sklearn"],
        work / "sklearn-stack.log",
        env={
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "SM_MODEL_DIR": str(model_dir),
            "POLYHOST_BIND_HOST": "127.0.0.1",
        },
    ).start()
    service.wait_http(f"http://127.0.0.1:{port}/ping", timeout=60)
    return service, f"http://127.0.0.1:{port}/invocations"


def measure(name: str, url: str, pid: int, body: Path, ctx: Context) -> Round:
    seconds = 1.0 if ctx.quick else 5.0
    before = cpu_seconds(pid)
    c32 = wrk_run(url, body, JSON, connections=32, duration_s=seconds)
    spent = cpu_seconds(pid) - before
    c1 = hey_latency(url, body, JSON, requests=200 if ctx.quick else 1500, cpus=LOADGEN_CPUS)
    print(f"  {name}: {c32.rps:.0f} req/s at c=32, hey p50 {c1.p50_ms:.2f} ms", flush=True)
    requests = max(1, round(c32.rps * seconds))
    return Round(name, c32, c1, spent / requests * 1e6)


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    model = digits(work / "model")
    body = work / "request.json"
    body.write_text(json.dumps({"instances": model.rows}), encoding="utf-8")
    bin_dir = peer.install(ctx.work_root / "venvs")
    rounds = 1 if ctx.quick else 5
    results: dict[str, list[Round]] = {"baseline": [], "polyhost/sklearn": []}
    stack, stack_url = stack_service(model.folder, work)
    try:
        with peer.Baseline(bin_dir, model, work) as baseline:
            assert baseline.service is not None
            systems = {
                "baseline": (baseline.url, baseline.service.pid),
                "polyhost/sklearn": (stack_url, stack.pid),
            }
            answers = {
                name: expect_ok(url, body.read_bytes(), JSON) for name, (url, _) in systems.items()
            }
            for url, _ in systems.values():  # warm-up
                wrk_run(url, body, JSON, connections=32, duration_s=1 if ctx.quick else 2)
            order = list(systems)
            for number in range(rounds):
                for name in order if number % 2 == 0 else reversed(order):
                    url, pid = systems[name]
                    results[name].append(measure(name, url, pid, body, ctx))
    finally:
        stack.stop()
    _report(section, results, answers, body)
    ctx.save_raw(
        KEY,
        {
            name: [{"c32": vars(r.c32), "c1": vars(r.c1), "cpu_us": r.cpu_us} for r in rounds_]
            for name, rounds_ in results.items()
        },
    )
    return section


def _report(
    section: Section, results: dict[str, list[Round]], answers: dict[str, bytes], body: Path
) -> None:
    base, poly = results["baseline"], results["polyhost/sklearn"]
    section.add(
        f'One row of `load_digits` as `{{"instances": [[64 floats]]}}` ({body.stat().st_size} '
        f'bytes); both answer `{{"predictions": [0]}}` (baseline {answers["baseline"]!r}, '
        f"polyhost/sklearn {answers['polyhost/sklearn']!r}). {len(base)} rounds; in each, "
        "every system ran wrk -c 32 (5 s, nothing pinned) then hey -c 1 (1500 requests, "
        "hey on CPU 0). Latency in ms; CPU = the server process's CPU time per request under "
        "the c=32 load.",
        "",
    )
    rows = []
    for number, (b, p) in enumerate(zip(base, poly, strict=True), start=1):
        rows.append(
            [
                number,
                b.c32.rps,
                p.c32.rps,
                f"{p.c32.rps / b.c32.rps:.2f}x",
                b.c32.p99_ms,
                p.c32.p99_ms,
                b.c1.p50_ms,
                p.c1.p50_ms,
                f"{b.cpu_us:.0f}",
                f"{p.cpu_us:.0f}",
                b.c32.errors + b.c1.errors + p.c32.errors + p.c1.errors,
            ]
        )
    section.table(
        [
            "round",
            "c=32 req/s baseline",
            "c=32 req/s polyhost/sklearn",
            "ratio",
            "c=32 p99 baseline",
            "c=32 p99 polyhost/sklearn",
            "c=1 p50 baseline (hey)",
            "c=1 p50 polyhost/sklearn (hey)",
            "CPU µs/req baseline",
            "CPU µs/req polyhost/sklearn",
            "errors",
        ],
        rows,
    )
    ratios = [p.c32.rps / b.c32.rps for b, p in zip(base, poly, strict=True)]
    p99 = [p.c32.p99_ms / b.c32.p99_ms for b, p in zip(base, poly, strict=True)]
    added = [p.c1.p50_ms - b.c1.p50_ms for b, p in zip(base, poly, strict=True)]
    cpu = [p.cpu_us - b.cpu_us for b, p in zip(base, poly, strict=True)]
    section.add(
        f"Spread over the rounds: c=32 ratio {min(ratios):.2f}-{max(ratios):.2f}x, c=32 p99 "
        f"ratio {min(p99):.2f}-{max(p99):.2f}x, c=1 p50 difference {min(added):+.2f} to "
        f"{max(added):+.2f} ms, CPU per request difference {min(cpu):+.0f} to "
        f"{max(cpu):+.0f} µs.",
        "",
    )
    section.target(
        "polyhost/sklearn (direct) c=32 throughput vs the baseline (median of the rounds)",
        f"{statistics.median(ratios):.2f}x",
        "≥ 1.0x",
        statistics.median(ratios) >= 1.0,
    )
    section.target(
        "polyhost/sklearn (direct) c=32 p99 vs the baseline's (median of the rounds)",
        f"{statistics.median(p99):.2f}x",
        "≤ 1.5x",
        statistics.median(p99) <= 1.5,
    )
    section.target(
        "polyhost/sklearn (direct) c=1 p50 vs the baseline's (hey, median of the rounds)",
        f"{statistics.median(added):+.2f} ms",
        "≤ +0.2 ms",
        statistics.median(added) <= 0.2,
    )
