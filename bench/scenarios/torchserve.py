"""Scenario 3: polyhost/pytorch against TorchServe, the same MNIST CNN and image.

Both serve the TorchScript `model.pt` of the CNN in PyTorch's MNIST example (seeded, untrained
weights: the same arithmetic as trained ones). Each request is one 1x1x28x28 image as a JSON
nested list; TorchServe runs a small JSON handler (`bench/peers/ts_handler.py`, BaseHandler
loading the TorchScript file), polyhost its `polyhost/pytorch` stack behind InvokeEndpoint.
TorchServe runs with 1 and with 2 workers, polyhost with 1 and 2 instances (containers). With
one process each side keeps its own default threading: TorchServe's worker leaves torch at one
intra-op thread per core, polyhost/pytorch uses half the cores (`POLYHOST_TORCH_THREADS`). With
two processes both sides get OMP_NUM_THREADS=1 per process (TorchServe's own CPU advice:
threads per worker = cores / workers), as two processes of two threads on two cores fight.
The best polyhost configuration is profiled (py-spy over the server and its containers).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from bench import plots
from bench.context import Context
from bench.models import mnist
from bench.peers import torchserve as peer
from bench.peers.venvs import package_version
from bench.polyhost_server import stack_endpoint
from bench.report import Section
from bench.scenarios.compare import (
    Measured,
    Plan,
    Running,
    System,
    failures_note,
    hotspots_note,
    measure_all,
    table,
)

KEY = "torchserve"
TITLE = "3. Against TorchServe (PyTorch, MNIST CNN)"


def _answer(body: bytes) -> str:
    value = json.loads(body)
    while isinstance(value, list) and value and isinstance(value[0], list):
        value = value[0]
    if not isinstance(value, list) or len(value) != 10:
        raise ValueError(f"expected 10 logits, got {body[:200]!r}")
    return f"argmax {max(range(10), key=lambda i: value[i])}"


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    model = mnist(work / "model")
    body = work / "image.json"
    body.write_text(json.dumps(model.rows), encoding="utf-8")
    plan = (
        Plan(hey_requests=200, c1_seconds=1, c32_seconds=1, warmup_seconds=1)
        if ctx.quick
        else Plan(
            hey_requests=1000, c1_seconds=4, c32_seconds=8, warmup_seconds=3, profile_seconds=5
        )
    )
    bin_dir = peer.install(ctx.work_root / "venvs")
    store = work / "model-store"
    peer.archive(bin_dir, model, store)

    def ts(workers: int) -> contextlib.AbstractContextManager[Running]:
        @contextlib.contextmanager
        def start() -> Iterator[Running]:
            threads = 1 if workers > 1 else None
            folder = work / f"torchserve-{workers}"
            with peer.TorchServe(bin_dir, store, folder, workers, threads) as server:
                assert server.service is not None
                yield Running(server.infer_url, server.service)

        return start()

    def poly(instances: int) -> contextlib.AbstractContextManager[Running]:
        @contextlib.contextmanager
        def start() -> Iterator[Running]:
            environment = {"OMP_NUM_THREADS": "1"} if instances > 1 else None
            with stack_endpoint(
                work / f"polyhost-{instances}",
                "mnist",
                "polyhost/pytorch",
                model.url,
                instances,
                environment,
            ) as (server, url):
                assert server.service is not None
                yield Running(url, server.service)

        return start()

    systems = [
        System("TorchServe, 1 worker", lambda: ts(1), body, "application/json", _answer),
        System(
            "TorchServe, 2 workers x 1 thread", lambda: ts(2), body, "application/json", _answer
        ),
        System("polyhost/pytorch, 1 instance", lambda: poly(1), body, "application/json", _answer),
        System(
            "polyhost/pytorch, 2 instances x 1 thread",
            lambda: poly(2),
            body,
            "application/json",
            _answer,
            profile=True,
        ),
    ]
    if ctx.quick:
        systems = [systems[0], systems[2]]
    results, failures = measure_all(systems, plan, work)
    section.add(
        f"TorchServe {package_version(bin_dir, 'torchserve')} with torch "
        f"{package_version(bin_dir, 'torch')} (own venv; Java: OpenJDK on PATH), token "
        "authorization off. One 28x28 image per request as JSON "
        f"({body.stat().st_size} bytes); the answer is the 10 logits. Latency in ms.",
        "",
    )
    table(section, results)
    failures_note(section, failures)
    hotspots_note(section, results)
    by_name = {m.name: m for m in results}
    best_ts = max(
        (m for m in results if m.name.startswith("TorchServe")),
        key=lambda m: m.wrk_c32.rps,
        default=None,
    )
    best_poly = max(
        (m for m in results if m.name.startswith("polyhost")),
        key=lambda m: m.wrk_c32.rps,
        default=None,
    )
    if best_ts is not None and best_poly is not None:
        ratio = best_poly.wrk_c32.rps / best_ts.wrk_c32.rps
        section.target(
            f"best polyhost ({best_poly.name}) vs best TorchServe ({best_ts.name}) throughput",
            f"{ratio:.2f}x",
            "≥ 1.5x",
            ratio >= 1.5,
        )
    pairs = (
        ("TorchServe, 1 worker", "polyhost/pytorch, 1 instance"),
        ("TorchServe, 2 workers x 1 thread", "polyhost/pytorch, 2 instances x 1 thread"),
    )
    for workers, (ts_name, poly_name) in enumerate(pairs, start=1):
        t, p = by_name.get(ts_name), by_name.get(poly_name)
        if t and p:
            section.add(
                f"- {workers} process(es) each side: polyhost/TorchServe throughput "
                f"{p.wrk_c32.rps / t.wrk_c32.rps:.2f}x, p50 at c=1 "
                f"{p.wrk_c1.p50_ms:.2f} vs {t.wrk_c1.p50_ms:.2f} ms."
            )
    section.add("")
    ctx.save_raw(
        KEY,
        [
            vars(m) | {k: vars(getattr(m, k)) for k in ("hey_c1", "wrk_c1", "wrk_c32")}
            for m in results
        ],
    )
    if results:
        _plot(ctx, section, results)
    return section


def _plot(ctx: Context, section: Section, results: list[Measured]) -> None:
    path = ctx.plot(section, "torchserve", "polyhost vs TorchServe")
    fig, (left, right) = plots.figure(2, width=12)
    names = [m.name.replace(", ", "\n") for m in results]
    plots.grouped_bars(
        left, names, {"req/s at c=32": [m.wrk_c32.rps for m in results]}, "requests/s", "throughput"
    )
    plots.grouped_bars(
        right,
        names,
        {
            "p50 c=1": [m.wrk_c1.p50_ms for m in results],
            "p99 c=1": [m.wrk_c1.p99_ms for m in results],
            "p99 c=32": [m.wrk_c32.p99_ms for m in results],
        },
        "ms",
        "latency",
        log=True,
    )
    for axis in (left, right):
        axis.tick_params(axis="x", labelsize=7)
    plots.save(fig, path, "MNIST CNN: polyhost vs TorchServe")
