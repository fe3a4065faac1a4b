"""Scenario 2: polyhost/sklearn against MLServer, the same scikit-learn model and rows.

The model is a LogisticRegression fitted on scikit-learn's `load_digits`; each request is one
row of 64 pixels. MLServer gets it as a V2 (Open Inference Protocol) request to its sklearn
runtime, polyhost as InvokeEndpoint with a JSON array (`polyhost/sklearn`, ModelDataUrl
`file://…/model.tar.gz` holding model.joblib). MLServer runs twice: its default (one parallel
inference worker process) and tuned for this model (`parallel_workers: 0`, inference in the
HTTP process). polyhost runs with one instance (one container, the default) and two.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from bench import plots
from bench.context import Context
from bench.models import digits
from bench.peers import mlserver as peer
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

KEY = "mlserver"
TITLE = "2. Against MLServer (scikit-learn, load_digits)"


def _v2_answer(body: bytes) -> str:
    outputs = json.loads(body)["outputs"]
    return f"class {outputs[0]['data'][0]}"


def _polyhost_answer(body: bytes) -> str:
    value = json.loads(body)
    while isinstance(value, list):
        value = value[0]
    return f"class {int(value)}"


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    model = digits(work / "model")
    bodies = work / "bodies"
    bodies.mkdir(exist_ok=True)
    invoke_body = bodies / "invoke.json"
    invoke_body.write_text(json.dumps(model.rows), encoding="utf-8")
    v2_body = bodies / "v2.json"
    v2_body.write_bytes(peer.v2_body(model.rows))
    bin_dir = peer.install(ctx.work_root / "venvs")
    plan = (
        Plan(hey_requests=300, c1_seconds=1, c32_seconds=1, warmup_seconds=1)
        if ctx.quick
        else Plan(profile_seconds=5.0 if ctx.profile else 0.0)
    )

    def ml(workers: int | None) -> contextlib.AbstractContextManager[Running]:
        @contextlib.contextmanager
        def start() -> Iterator[Running]:
            name = "default" if workers is None else f"workers-{workers}"
            with peer.MLServer(bin_dir, model, work / f"mlserver-{name}", workers) as server:
                assert server.service is not None
                yield Running(server.infer_url, server.service)

        return start()

    def poly(instances: int) -> contextlib.AbstractContextManager[Running]:
        @contextlib.contextmanager
        def start() -> Iterator[Running]:
            with stack_endpoint(
                work / f"polyhost-{instances}", "digits", "polyhost/sklearn", model.url, instances
            ) as (server, url):
                assert server.service is not None
                yield Running(url, server.service)

        return start()

    systems = [
        System(
            "MLServer default (parallel_workers=1)",
            lambda: ml(None),
            v2_body,
            "application/json",
            _v2_answer,
        ),
        System(
            "MLServer tuned (parallel_workers=0)",
            lambda: ml(0),
            v2_body,
            "application/json",
            _v2_answer,
        ),
        System(
            "polyhost/sklearn, 1 instance",
            lambda: poly(1),
            invoke_body,
            "application/json",
            _polyhost_answer,
            profile=True,
        ),
        System(
            "polyhost/sklearn, 2 instances",
            lambda: poly(2),
            invoke_body,
            "application/json",
            _polyhost_answer,
        ),
    ]
    if ctx.quick:
        systems = [systems[1], systems[2]]
    results, failures = measure_all(systems, plan, work)
    section.add(
        f"MLServer {package_version(bin_dir, 'mlserver')} with mlserver-sklearn "
        f"{package_version(bin_dir, 'mlserver-sklearn')} and scikit-learn "
        f"{package_version(bin_dir, 'scikit-learn')} (own venv); access logs off on both sides. "
        f"One row of `load_digits` per request ({invoke_body.stat().st_size} bytes as "
        f"InvokeEndpoint JSON, {v2_body.stat().st_size} bytes as V2). Latency in ms; "
        "'ready in' = from launch to the model answering (polyhost: server start, "
        "CreateEndpoint, InService).",
        "",
    )
    table(section, results)
    failures_note(section, failures)
    hotspots_note(section, results)
    _targets(section, {m.name: m for m in results})
    ctx.save_raw(
        KEY,
        [
            vars(m) | {k: vars(getattr(m, k)) for k in ("hey_c1", "wrk_c1", "wrk_c32")}
            for m in results
        ],
    )
    if results:
        path = ctx.plot(section, "mlserver", "polyhost vs MLServer")
        fig, (left, right) = plots.figure(2, width=12)
        names = [m.name.replace(" (", "\n(").replace(", ", "\n") for m in results]
        plots.grouped_bars(
            left,
            names,
            {"req/s at c=32": [m.wrk_c32.rps for m in results]},
            "requests/s",
            "throughput",
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
        plots.save(fig, path, "scikit-learn digits model: polyhost vs MLServer")
    return section


def _targets(section: Section, by_name: dict[str, Measured]) -> None:
    poly = by_name.get("polyhost/sklearn, 1 instance")
    if poly is None:
        return
    for name, factor in (
        ("MLServer default (parallel_workers=1)", 2.0),
        ("MLServer tuned (parallel_workers=0)", 1.5),
    ):
        other = by_name.get(name)
        if other is None:
            continue
        ratio = poly.wrk_c32.rps / other.wrk_c32.rps
        section.target(
            f"polyhost (1 instance) throughput vs {name}",
            f"{ratio:.2f}x",
            f"≥ {factor:g}x",
            ratio >= factor,
        )
        section.target(
            f"polyhost p99 at c=32 vs {name}",
            f"{poly.wrk_c32.p99_ms:.2f} ms vs {other.wrk_c32.p99_ms:.2f} ms",
            "equal or lower",
            poly.wrk_c32.p99_ms <= other.wrk_c32.p99_ms,
        )
