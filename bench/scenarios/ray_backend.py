"""Scenario 12: the Ray backend: a container on another node, cold start, losing a node.

A local Ray cluster of real `ray start` nodes on loopback (tests/support/ray_cluster.py): a head
on 127.0.0.2 with no CPUs to give, so that nothing is placed beside the GCS and the polyhost
server (its driver), and three workers on 127.0.0.3-5. polyhost runs as `polyhost serve
--backend ray --ray-address <head>`; everything else is the standard boto3 SageMaker API.

- **Overhead.** The light echo container (`bench/echo`) behind a 1-instance endpoint, once with
  `--backend process` (a child of the server) and once with `--backend ray` (on a worker node:
  the router calls it over the node's address), measured alternately round after round: latency
  at c=1 (wrk, 1 connection; load generator on CPU 0, server and container on CPU 1) and
  throughput at c=32 (wrk, nothing pinned); the ratios ray/process.
- **Cold start.** CreateEndpoint of a 3-instance endpoint until DescribeEndpoint says InService,
  a fresh endpoint each time; where its containers run is read from the nodes' process trees.
- **Node loss.** Under steady load (closed-loop clients, each request's start, end and status
  recorded) the worker holding one instance is killed (SIGKILL of its raylet and every process
  of the node). Measured from the kill: when Ray's GCS declares the node dead; when the last
  request that failed was sent (a request sent to the lost instance fails until routing has
  withdrawn it: the router does not retry elsewhere; a request in flight at the kill counts from
  the kill); when DescribeEndpoint's CurrentInstanceCount dips; when it is back at 3 and the new
  instance's container runs on a surviving node (placed again elsewhere). How long the failed
  requests took to fail is reported too: one in flight on the lost node should get its 503 at
  once, not hang.
  Target: withdrawn from routing within 2 s.

The scenario is skipped, saying why, when ray is not installed or when this polyhost has no
`serve --backend ray`.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.metadata
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from tests.support.ray_cluster import LocalRayCluster, ray_installed

from bench.checks import expect_ok
from bench.context import Context
from bench.cpus import set_tree_affinity
from bench.loadgen import Latency, wrk_run
from bench.machine import cpu_model
from bench.payloads import write_bodies
from bench.polyhost_server import ECHO_IMAGE, ECHO_PROGRAM, PolyhostServer
from bench.procs import LOADGEN_CPUS
from bench.report import Section

KEY = "ray"
TITLE = "12. Ray backend: a container on another node, cold start, node loss"
CONTENT_TYPE = "application/json"
BACKENDS = ("process", "ray")
WORKERS = 3  # nodes that take instances; the head takes none
INSTANCES = 3
LOAD_CLIENTS = 4  # closed-loop clients of the node-loss load
WITHDRAW_TARGET_S = 2.0
RECOVERY_BOUND_S = 120.0


def _serve_usage() -> str:
    return subprocess.run(
        [sys.executable, "-m", "polyhost", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout


def why_not_runnable() -> str | None:
    """Why this scenario cannot run here, or None."""
    if not ray_installed():
        return "ray is not installed in this environment (`pip install 'polyhost[ray]'`)"
    if "--ray-address" not in _serve_usage():
        return "this polyhost has no `serve --backend ray --ray-address` yet"
    return None


@contextlib.contextmanager
def _environment(extra: dict[str, str]) -> Iterator[None]:
    """os.environ plus `extra` while a server process is spawned (it inherits them)."""
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _ray_server(work: Path, cluster: LocalRayCluster) -> PolyhostServer:
    """`--backend ray` as a driver on the head's address (never the external interface)."""
    args = ["--backend", "ray", "--ray-address", cluster.address]
    if "--ray-node-address" in _serve_usage():
        args += ["--ray-node-address", cluster.head.ip]
    server = PolyhostServer(work, extra_args=args)
    with _environment(cluster.driver_env()):
        server.start()
    return server


def _echo_pids(processes: list[psutil.Process]) -> list[int]:
    pids = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if str(ECHO_PROGRAM) in " ".join(process.cmdline()):
                pids.append(process.pid)
    return pids


def echo_placement(cluster: LocalRayCluster) -> dict[str, list[int]]:
    """node address -> pids of the echo containers running on that node."""
    return {node.ip: _echo_pids(node.processes()) for node in cluster.live_nodes}


def _measure_overhead(
    backend: str, work: Path, cluster: LocalRayCluster, body: Path, seconds: float
) -> dict[str, Any]:
    name = f"bench-{backend}-echo"
    if backend == "ray":
        server = _ray_server(work / backend, cluster)
    else:
        server = PolyhostServer(work / backend, extra_args=["--backend", "process"]).start()
    try:
        server.deploy(name, [{"Image": ECHO_IMAGE}])
        url = server.invocations_url(name)
        expect_ok(url, body.read_bytes(), CONTENT_TYPE, same_body=True)
        assert server.service is not None
        serving = [server.service.pid]
        node = "server's machine (child process)"
        if backend == "ray":
            placement = {ip: pids for ip, pids in echo_placement(cluster).items() if pids}
            if list(placement) == [cluster.head.ip] or len(placement) != 1:
                raise RuntimeError(f"echo container not on exactly one worker: {placement}")
            node, pids = next(iter(placement.items()))
            serving += pids
        for pid in serving:
            set_tree_affinity(pid, [1])
        c1 = wrk_run(url, body, CONTENT_TYPE, connections=1, duration_s=seconds, cpus=LOADGEN_CPUS)
        for pid in serving:
            set_tree_affinity(pid, None)
        c32 = wrk_run(url, body, CONTENT_TYPE, connections=32, duration_s=seconds)
    finally:
        server.stop()
    return {"c1": c1, "c32": c32, "node": node}


@dataclass(frozen=True)
class Outcome:
    started: float
    ended: float
    status: int  # 0: no HTTP answer (connection failed or reset)


@dataclass
class LoadLoop:
    """Closed-loop clients posting to one URL until stopped, every request recorded."""

    port: int
    path: str
    body: bytes
    clients: int = LOAD_CLIENTS
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> LoadLoop:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._client, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=40)
        with self._lock:
            return sorted(self.outcomes, key=lambda outcome: outcome.started)

    def _client(self) -> None:
        headers = {"Content-Type": CONTENT_TYPE}
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set():
            started = time.monotonic()
            status = 0
            try:
                connection.request("POST", self.path, body=self.body, headers=headers)
                answer = connection.getresponse()
                answer.read()
                status = answer.status
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            with self._lock:
                self.outcomes.append(Outcome(started, time.monotonic(), status))
        connection.close()


@dataclass
class Watcher:
    """Polls DescribeEndpoint's CurrentInstanceCount, the GCS node table and the echo
    containers' nodes, each sample stamped with time.monotonic()."""

    server: PolyhostServer
    endpoint: str
    cluster: LocalRayCluster
    victim: str
    counts: list[tuple[float, int]] = field(default_factory=list)
    victim_dead_at: float | None = None
    placed_elsewhere_at: float | None = None
    survivors_before: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Watcher:
        placement = echo_placement(self.cluster)
        self.survivors_before = sum(len(p) for ip, p in placement.items() if ip != self.victim)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _watch(self) -> None:
        client = self.server.sagemaker()
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                described = client.describe_endpoint(EndpointName=self.endpoint)
                variant = described["ProductionVariants"][0]
                self.counts.append((time.monotonic(), int(variant["CurrentInstanceCount"])))
            if self.victim_dead_at is None:
                with contextlib.suppress(Exception):
                    table = self.cluster.node_table()
                    if any(r.ip == self.victim and not r.alive for r in table):
                        self.victim_dead_at = time.monotonic()
            if self.placed_elsewhere_at is None and self.victim_dead_at is not None:
                placement = echo_placement(self.cluster)
                survivors = sum(len(p) for ip, p in placement.items() if ip != self.victim)
                if survivors > self.survivors_before:
                    self.placed_elsewhere_at = time.monotonic()
            time.sleep(0.02)


def _node_loss(
    server: PolyhostServer, cluster: LocalRayCluster, endpoint: str, body: bytes, calm_s: float
) -> dict[str, Any]:
    placement = echo_placement(cluster)
    victim = max(ip for ip, pids in placement.items() if pids and ip != cluster.head.ip)
    load = LoadLoop(server.port, f"/endpoints/{endpoint}/invocations", body).start()
    watcher = Watcher(server, endpoint, cluster, victim).start()
    try:
        time.sleep(calm_s)
        killed = cluster.kill_node(victim)
        deadline = time.monotonic() + RECOVERY_BOUND_S
        back_at: float | None = None
        while time.monotonic() < deadline:
            counts = list(watcher.counts)
            dip = _first_dip(counts, killed.at)
            back = [t for t, n in counts if t > dip and n == INSTANCES]
            if back and watcher.placed_elsewhere_at is not None:
                back_at = back[0]
                break
            time.sleep(0.05)
        time.sleep(calm_s)  # steady again: the recovered instance serves
    finally:
        outcomes = load.stop()
        watcher.stop()
    kill = killed.at
    dip_at = _first_dip(watcher.counts, kill)
    after = [o for o in outcomes if o.ended >= kill]
    failed = [o for o in after if o.status != 200]
    before_recovery = [o for o in failed if back_at is None or o.started <= back_at]
    # The last request routing sent to the lost instance: the latest start of a failed request
    # (one in flight at the kill counts from the kill), not its end, which a hung call delays.
    last_failure = max((max(o.started, kill) for o in before_recovery), default=None)
    tail = [o for o in outcomes if back_at is not None and o.started > back_at + 0.5]

    def since(moment: float | None) -> float | None:
        return None if moment is None else moment - kill

    return {
        "victim": victim,
        "killed_pids": len(killed.pids),
        "ray_dead_s": since(watcher.victim_dead_at),
        "last_failure_s": since(last_failure),
        "count_dip_s": since(dip_at if dip_at != float("inf") else None),
        "count_back_s": since(back_at),
        "placed_elsewhere_s": since(watcher.placed_elsewhere_at),
        "requests_before_kill": len(outcomes) - len(after),
        "requests_after_kill": len(after),
        "failed_after_kill": len(failed),
        "failed_statuses": sorted({o.status for o in failed}),
        "failed": [(o.started - kill, o.ended - kill, o.status) for o in failed],
        "longest_failed_s": max((o.ended - o.started for o in failed), default=0.0),
        "failed_after_recovery": sum(1 for o in tail if o.status != 200),
        "requests_after_recovery": len(tail),
        "placement_after": {ip: len(p) for ip, p in echo_placement(cluster).items()},
        "counts": [(t - kill, n) for t, n in watcher.counts],
    }


def _first_dip(counts: list[tuple[float, int]], after: float) -> float:
    return min((t for t, n in counts if t > after and n < INSTANCES), default=float("inf"))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    missing = why_not_runnable()
    if missing is not None:
        section.add(f"**Not run**: {missing}.", "")
        print(f"  {KEY}: skipped: {missing}", flush=True)
        return section
    work = ctx.work(KEY)
    body = write_bodies(work, {"1KB": 1024})["1KB"]
    rounds = 1 if ctx.quick else 3
    starts = 1 if ctx.quick else 3
    seconds = 2.0 if ctx.quick else 8.0
    with LocalRayCluster(nodes=1 + WORKERS, tmp_path=work / "cluster", head_num_cpus=0) as cluster:
        print(f"  {KEY}: {1 + WORKERS}-node cluster up in {cluster.start_seconds:.1f} s")
        runs: dict[str, list[dict[str, Any]]] = {backend: [] for backend in BACKENDS}
        for round_number in range(rounds):
            for backend in BACKENDS:
                runs[backend].append(_measure_overhead(backend, work, cluster, body, seconds))
                print(f"  {KEY}: round {round_number + 1} {backend} done", flush=True)
        server = _ray_server(work / "ray-loss", cluster)
        try:
            cold: list[float] = []
            placements: list[dict[str, int]] = []
            for index in range(starts):
                name = f"bench-ray-{INSTANCES}x-{index}"
                cold.append(server.deploy(name, [{"Image": ECHO_IMAGE}], instances=INSTANCES))
                placements.append({ip: len(p) for ip, p in echo_placement(cluster).items()})
                if index < starts - 1:
                    server.delete(name)
            loss = _node_loss(server, cluster, name, body.read_bytes(), calm_s=seconds / 2)
        finally:
            server.stop()
        nodes_line = ", ".join(
            f"{node.ip}{' (head, 0 CPUs)' if node.head else ''}" for node in cluster.all_nodes()
        )
        start_s = cluster.start_seconds
    _write(section, ctx, runs, cold, placements, loss, rounds, starts, nodes_line, start_s)
    return section


def _write(
    section: Section,
    ctx: Context,
    runs: dict[str, list[dict[str, Any]]],
    cold: list[float],
    placements: list[dict[str, int]],
    loss: dict[str, Any],
    rounds: int,
    starts: int,
    nodes_line: str,
    cluster_start_s: float,
) -> None:
    def best(backend: str, key: str) -> Latency:
        """The run with the median p50 (c1) or the best throughput (c32) of the rounds."""
        results: list[Latency] = [r[key] for r in runs[backend]]
        if key == "c32":
            return max(results, key=lambda r: r.rps)
        return sorted(results, key=lambda r: r.p50_ms)[len(results) // 2]

    memory = psutil.virtual_memory().total / 2**30
    section.add(
        f"Machine: {cpu_model()}, {os.cpu_count()} cores, RAM {memory:.1f} GiB; Ray "
        f"{importlib.metadata.version('ray')}. Cluster: `ray start` nodes {nodes_line}, "
        f"on loopback only (up in "
        f"{cluster_start_s:.1f} s). One request = 1 KB JSON to the light echo container "
        f"(`bench/echo`), 1 instance; {rounds} round(s) per backend, alternated; latency from "
        "the round with the median p50, throughput from the best round. With `--backend ray` "
        f"the container ran on {', '.join(sorted({r['node'] for r in runs['ray']}))}.",
        "",
    )
    rows: list[list[object]] = []
    for backend in BACKENDS:
        c1, c32 = best(backend, "c1"), best(backend, "c32")
        errors = sum(r["c1"].errors + r["c32"].errors for r in runs[backend])
        rows.append([backend, c1.p50_ms, c1.p99_ms, c32.rps, c32.p99_ms, errors])
    section.table(
        ["backend", "p50 ms (c=1)", "p99 ms (c=1)", "req/s (c=32)", "p99 ms (c=32)", "errors"],
        rows,
    )
    for backend in BACKENDS:
        each = "; ".join(
            f"{r['c1'].p50_ms:.3f} / {r['c1'].p99_ms:.3f} ms, {r['c32'].rps:,.0f} req/s"
            for r in runs[backend]
        )
        section.add(f"- {backend}, each round (p50 / p99 at c=1, c=32 throughput): {each}")
    section.add("")
    process_c1, ray_c1 = best("process", "c1"), best("ray", "c1")
    process_c32, ray_c32 = best("process", "c32"), best("ray", "c32")
    extra_us = (ray_c1.p50_ms - process_c1.p50_ms) * 1000
    section.add(
        "A container on another Ray node against a child process: p50 at c=1 ratio "
        f"{ray_c1.p50_ms / process_c1.p50_ms:.2f} ({extra_us:+.0f} µs), throughput at c=32 "
        f"ratio {ray_c32.rps / process_c32.rps:.2f}.",
        "",
    )
    median_cold = statistics.median(cold)
    section.add(
        f"Cold start of a {INSTANCES}-instance endpoint on {WORKERS} worker nodes "
        f"(CreateEndpoint to InService, {starts} fresh endpoint(s)): median {median_cold:.2f} s "
        f"({', '.join(f'{s:.2f}' for s in cold)} s). Echo containers per node after each "
        f"start: {'; '.join(str(p) for p in placements)}.",
        "",
    )
    moments = [
        ("Ray's GCS declares the node dead", "ray_dead_s"),
        ("last failed request sent (routing has withdrawn the instance)", "last_failure_s"),
        ("DescribeEndpoint CurrentInstanceCount dips below 3", "count_dip_s"),
        ("the instance's container runs on a surviving node", "placed_elsewhere_s"),
        ("CurrentInstanceCount back at 3", "count_back_s"),
    ]
    section.table(
        ["after SIGKILL of node " + loss["victim"], "seconds"],
        [[what, _seconds(loss[key])] for what, key in moments],
    )
    section.add(
        f"Load: {LOAD_CLIENTS} closed-loop clients. {loss['requests_after_kill']} requests from "
        f"the kill on, {loss['failed_after_kill']} failed (statuses "
        f"{loss['failed_statuses'] or 'none'}; 0 = no HTTP answer within the client's 30 s), "
        f"the longest of them answered after {loss['longest_failed_s']:.2f} s; after recovery "
        f"{loss['failed_after_recovery']} of {loss['requests_after_recovery']} failed. "
        f"{loss['killed_pids']} processes killed; echo containers per node afterwards: "
        f"{loss['placement_after']}.",
        "",
    )
    withdrawn = loss["last_failure_s"]
    if withdrawn is None:  # no request failed: bounded by the instance count's dip instead
        withdrawn = loss["count_dip_s"]
    section.target(
        "a lost node's instance is withdrawn from routing",
        f"{_seconds(withdrawn)} s after SIGKILL",
        f"< {WITHDRAW_TARGET_S:g} s",
        withdrawn is not None and withdrawn < WITHDRAW_TARGET_S,
    )
    ctx.save_raw(
        KEY,
        {
            "overhead": {
                b: [{"c1": vars(r["c1"]), "c32": vars(r["c32"]), "node": r["node"]} for r in rs]
                for b, rs in runs.items()
            },
            "cold_s": cold,
            "placements": placements,
            "node_loss": loss,
        },
    )
