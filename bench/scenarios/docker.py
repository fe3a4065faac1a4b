"""Scenario 10: the Docker backend against the process backend, same scikit-learn model.

The same digits LogisticRegression (`bench.models.digits`) is served by `polyhost/sklearn` run
by each backend: as a child process (`--backend process`) and as the image built by
`polyhost images build sklearn` (`--backend docker`, host network). Per backend: the cold start
(CreateEndpoint to the first InService answer of DescribeEndpoint, a fresh endpoint each time,
median of a few), latency at concurrency 1 (wrk, 1 connection; load generator on CPU 0, server
and container on CPU 1) and throughput at concurrency 32 (wrk, nothing pinned). The two
backends are measured alternately, round after round, so both see the same machine.

The daemon is DOCKER_HOST, else the one `scripts/docker-up.sh` wrote into
build/docker-test.env; the image is built on the base image named there (POLYHOST_TEST_BASE_IMAGE,
default python:3.11-slim), from Docker's cache when nothing changed.
"""

from __future__ import annotations

import io
import json
import os
import statistics
from pathlib import Path
from typing import Any

from bench.checks import expect_ok
from bench.context import Context
from bench.cpus import set_tree_affinity
from bench.loadgen import Latency, wrk_run
from bench.models import digits
from bench.polyhost_server import PolyhostServer
from bench.procs import LOADGEN_CPUS
from bench.report import Section

KEY = "docker"
TITLE = "10. Docker backend vs process backend (scikit-learn)"
CONTENT_TYPE = "application/json"
ENV_FILE = Path(__file__).resolve().parents[2] / "build" / "docker-test.env"
BACKENDS = ("process", "docker")


def _docker_settings() -> dict[str, str]:
    values: dict[str, str] = {}
    if ENV_FILE.is_file():
        for line in ENV_FILE.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip()
    for key in ("DOCKER_HOST", "POLYHOST_TEST_BASE_IMAGE"):
        if os.environ.get(key):
            values[key] = os.environ[key]
    return values


def _prepare_image(settings: dict[str, str]) -> None:
    """The sklearn image of this checkout (Docker's cache makes it quick when unchanged)."""
    from polyhost.backends.docker.build import BuildRequest, build

    if settings.get("DOCKER_HOST"):
        os.environ["DOCKER_HOST"] = settings["DOCKER_HOST"]
    base = settings.get("POLYHOST_TEST_BASE_IMAGE", "python:3.11-slim")
    build(BuildRequest(stacks=("sklearn",), base_image=base), out=io.StringIO())


def _container_pids(server: PolyhostServer, backend: str) -> list[int]:
    """The processes serving requests: the server's tree, plus the container's for Docker."""
    assert server.service is not None
    pids = [server.service.pid]
    if backend == "docker":
        from polyhost.backends.docker.daemon import connect
        from polyhost.backends.docker.labels import SERVER
        from polyhost.backends.server_id import server_id

        client = connect()
        label = f"{SERVER}={server_id(server.work / 'state')}"
        for found in client.api.containers(filters={"label": [label]}):
            pid = client.api.inspect_container(found["Id"])["State"]["Pid"]
            pids.append(int(pid))
    return pids


def _measure(
    ctx: Context, backend: str, work: Path, url: str, body: Path, starts: int, seconds: float
) -> dict[str, Any]:
    with PolyhostServer(work / backend, extra_args=["--backend", backend]) as server:
        cold: list[float] = []
        for index in range(starts):
            name = f"bench-{backend}-{index}"
            cold.append(server.deploy(name, [{"Image": "polyhost/sklearn", "ModelDataUrl": url}]))
            if index < starts - 1:
                server.delete(name)
        invoke = server.invocations_url(f"bench-{backend}-{starts - 1}")
        expect_ok(invoke, body.read_bytes(), CONTENT_TYPE)
        serving = _container_pids(server, backend)
        for pid in serving:
            set_tree_affinity(pid, [1])
        c1 = wrk_run(
            invoke, body, CONTENT_TYPE, connections=1, duration_s=seconds, cpus=LOADGEN_CPUS
        )
        for pid in serving:
            set_tree_affinity(pid, None)
        c32 = wrk_run(invoke, body, CONTENT_TYPE, connections=32, duration_s=seconds)
    return {"cold_s": cold, "c1": c1, "c32": c32}


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    settings = _docker_settings()
    _prepare_image(settings)
    model = digits(work / "model")
    body = work / "body.json"
    body.write_text(json.dumps(model.rows), encoding="utf-8")
    rounds = 1 if ctx.quick else 2
    starts = 1 if ctx.quick else 3
    seconds = 2.0 if ctx.quick else 8.0
    runs: dict[str, list[dict[str, Any]]] = {backend: [] for backend in BACKENDS}
    for round_number in range(rounds):
        for backend in BACKENDS:
            runs[backend].append(_measure(ctx, backend, work, model.url, body, starts, seconds))
            print(f"  {KEY}: round {round_number + 1} {backend} done", flush=True)

    def best(backend: str, key: str) -> Latency:
        """The run with the median p50 (c1) or the best throughput (c32) of the rounds."""
        results = [r[key] for r in runs[backend]]
        if key == "c32":
            return max(results, key=lambda r: r.rps)
        return sorted(results, key=lambda r: r.p50_ms)[len(results) // 2]

    cold = {b: statistics.median(s for r in runs[b] for s in r["cold_s"]) for b in BACKENDS}
    section.add(
        "One request = 1 row of the digits data set (64 features) as JSON; answer the predicted "
        f"class. {rounds} round(s) per backend, alternated; latency from the round with the "
        f"median p50, throughput from the best round; cold start is the median of "
        f"{rounds * starts} fresh endpoints. Docker image: polyhost/sklearn of this checkout, "
        "host network.",
        "",
    )
    rows: list[list[object]] = []
    for backend in BACKENDS:
        c1, c32 = best(backend, "c1"), best(backend, "c32")
        errors = sum(r["c1"].errors + r["c32"].errors for r in runs[backend])
        rows.append(
            [backend, c1.p50_ms, c1.p99_ms, c32.rps, c32.p99_ms, f"{cold[backend]:.2f}", errors]
        )
    section.table(
        [
            "backend",
            "p50 ms (c=1)",
            "p99 ms (c=1)",
            "req/s (c=32)",
            "p99 ms (c=32)",
            "cold start s",
            "errors",
        ],
        rows,
    )
    process_c1, docker_c1 = best("process", "c1"), best("docker", "c1")
    process_c32, docker_c32 = best("process", "c32"), best("docker", "c32")
    overhead = docker_c1.p50_ms - process_c1.p50_ms
    section.add(
        f"Per-request cost of Docker over a process: {overhead * 1000:+.0f} µs at p50 "
        f"({docker_c1.p50_ms / process_c1.p50_ms - 1:+.1%}); throughput at c=32 "
        f"{docker_c32.rps / process_c32.rps - 1:+.1%}; cold start "
        f"{cold['docker'] - cold['process']:+.2f} s.",
        "",
    )
    section.target(
        "Docker p50 latency at c=1 within 10% of the process backend's",
        f"{docker_c1.p50_ms:.3f} ms vs {process_c1.p50_ms:.3f} ms",
        "≤ 110%",
        docker_c1.p50_ms <= 1.1 * process_c1.p50_ms,
    )
    section.target(
        "Docker throughput at c=32 within 10% of the process backend's",
        f"{docker_c32.rps:.0f} vs {process_c32.rps:.0f} req/s",
        "≥ 90%",
        docker_c32.rps >= 0.9 * process_c32.rps,
    )
    ctx.save_raw(
        KEY,
        {
            b: [{"cold_s": r["cold_s"], "c1": vars(r["c1"]), "c32": vars(r["c32"])} for r in rs]
            for b, rs in runs.items()
        },
    )
    return section
