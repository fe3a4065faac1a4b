"""Scenario 13: polyhost/sklearn, called directly and through polyhost, against the baseline.

The same digits model (`bench.models.digits`, one LogisticRegression on `load_digits`) and the
same request, `{"instances": [one row of 64 floats]}`, to three systems: the baseline
(`bench/peers/baseline_app.py`: starlette under one uvicorn worker, orjson, the prediction
inline in the handler), the `polyhost/sklearn` container program itself
(`python -m polyhost.stacks.sklearn`, started as the process backend starts it, no router in
front), and a real `polyhost serve` with one `polyhost/sklearn` endpoint, invoked on
`/endpoints/NAME/invocations` (the end-to-end path a user gets). All run side by side for the
whole scenario; each round measures one after the other (the order turns every round): wrk at
c=32 (nothing pinned), then hey at c=1 (pinned to CPU 0), and the CPU time spent per request
under the c=32 load, from /proc (through polyhost: the server and its container together).
The machine is shared, so the verdicts are on the median of the rounds' ratios, and every
round is shown.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench.checks import expect_ok
from bench.context import Context
from bench.loadgen import Latency, hey_latency, wrk_run
from bench.models import digits
from bench.peers import baseline as peer
from bench.polyhost_server import stack_endpoint
from bench.procs import LOADGEN_CPUS, Service, free_port
from bench.report import Section

KEY = "sklearn-baseline"
TITLE = "13. scikit-learn: polyhost/sklearn, directly and through polyhost, against the baseline"
JSON = "application/json"
THROUGH = "through polyhost"


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


def measure(name: str, url: str, pids: list[int], body: Path, ctx: Context) -> Round:
    seconds = 1.0 if ctx.quick else 5.0
    before = sum(cpu_seconds(pid) for pid in pids)
    c32 = wrk_run(url, body, JSON, connections=32, duration_s=seconds)
    spent = sum(cpu_seconds(pid) for pid in pids) - before
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
    results: dict[str, list[Round]] = {"baseline": [], "polyhost/sklearn": [], THROUGH: []}
    stack, stack_url = stack_service(model.folder, work)
    try:
        with contextlib.ExitStack() as stack_of:
            baseline = stack_of.enter_context(peer.Baseline(bin_dir, model, work))
            server, server_url = stack_of.enter_context(
                stack_endpoint(work / "polyhost", "digits", "polyhost/sklearn", model.url)
            )
            assert baseline.service is not None and server.service is not None
            own = psutil.Process(server.service.pid)
            server_pids = [own.pid, *(child.pid for child in own.children(recursive=True))]
            systems = {
                "baseline": (baseline.url, [baseline.service.pid]),
                "polyhost/sklearn": (stack_url, [stack.pid]),
                THROUGH: (server_url, server_pids),
            }
            answers = {
                name: expect_ok(url, body.read_bytes(), JSON) for name, (url, _) in systems.items()
            }
            for url, _ in systems.values():  # warm-up
                wrk_run(url, body, JSON, connections=32, duration_s=1 if ctx.quick else 2)
            order = list(systems)
            for number in range(rounds):
                for name in order if number % 2 == 0 else reversed(order):
                    url, pids = systems[name]
                    results[name].append(measure(name, url, pids, body, ctx))
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
    base = results["baseline"]
    section.add(
        f'One row of `load_digits` as `{{"instances": [[64 floats]]}}` ({body.stat().st_size} '
        f'bytes); every system answers `{{"predictions": [0]}}` ('
        + ", ".join(f"{name} {answer!r}" for name, answer in answers.items())
        + f"). {len(base)} rounds; in each, every system ran wrk -c 32 (5 s, nothing pinned) "
        "then hey -c 1 (1500 requests, hey on CPU 0). Latency in ms; CPU = CPU time per "
        "request under the c=32 load (through polyhost: the server and its container).",
        "",
    )
    systems = [name for name in results if name != "baseline"]
    rows = []
    for number, b in enumerate(base):
        row: list[object] = [number + 1, b.c32.rps]
        row += [results[name][number].c32.rps for name in systems]
        row += [f"{results[name][number].c32.rps / b.c32.rps:.2f}x" for name in systems]
        row += [b.c32.p99_ms, *(results[name][number].c32.p99_ms for name in systems)]
        row += [b.c1.p50_ms, *(results[name][number].c1.p50_ms for name in systems)]
        row += [f"{b.cpu_us:.0f}", *(f"{results[n][number].cpu_us:.0f}" for n in systems)]
        row.append(sum(r[number].c32.errors + r[number].c1.errors for r in results.values()))
        rows.append(row)
    section.table(
        [
            "round",
            "c=32 req/s baseline",
            *(f"c=32 req/s {name}" for name in systems),
            *(f"ratio {name}" for name in systems),
            "c=32 p99 baseline",
            *(f"c=32 p99 {name}" for name in systems),
            "c=1 p50 baseline (hey)",
            *(f"c=1 p50 {name} (hey)" for name in systems),
            "CPU µs/req baseline",
            *(f"CPU µs/req {name}" for name in systems),
            "errors",
        ],
        rows,
    )
    for name, label in (("polyhost/sklearn", "polyhost/sklearn (direct)"), (THROUGH, THROUGH)):
        poly = results[name]
        ratios = [p.c32.rps / b.c32.rps for b, p in zip(base, poly, strict=True)]
        p99 = [p.c32.p99_ms / b.c32.p99_ms for b, p in zip(base, poly, strict=True)]
        added = [p.c1.p50_ms - b.c1.p50_ms for b, p in zip(base, poly, strict=True)]
        cpu = [p.cpu_us - b.cpu_us for b, p in zip(base, poly, strict=True)]
        section.add(
            f"{label}, spread over the rounds: c=32 ratio {min(ratios):.2f}-{max(ratios):.2f}x, "
            f"c=32 p99 ratio {min(p99):.2f}-{max(p99):.2f}x, c=1 p50 difference "
            f"{min(added):+.2f} to {max(added):+.2f} ms, CPU per request difference "
            f"{min(cpu):+.0f} to {max(cpu):+.0f} µs.",
            "",
        )
        section.target(
            f"{label} c=32 throughput vs the baseline (median of the rounds)",
            f"{statistics.median(ratios):.2f}x",
            "≥ 1.0x",
            statistics.median(ratios) >= 1.0,
        )
        section.target(
            f"{label} c=32 p99 vs the baseline's (median of the rounds)",
            f"{statistics.median(p99):.2f}x",
            "≤ 1.5x",
            statistics.median(p99) <= 1.5,
        )
        section.target(
            f"{label} c=1 p50 vs the baseline's (hey, median of the rounds)",
            f"{statistics.median(added):+.2f} ms",
            "≤ +0.2 ms",
            statistics.median(added) <= 0.2,
        )
