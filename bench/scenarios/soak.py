"""Scenario 11: soak, a 15-container endpoint under steady load, one container SIGKILLed a minute.

What it runs for the whole duration (10 minutes by `make soak`; `python -m bench.soak --minutes
N` or `--seconds N` for other lengths; `--quick` in the harness is 20 s):

- steady load: wrk (Debian's), 8 connections, 1 KB JSON bodies, rotating the target container
  header over the 14 *healthy* containers of a 15-container Direct endpoint of the light echo
  container (`bench/containers/echo.py`); one wrk run per period, so each period has its numbers;
- the *victim*, the endpoint's 15th container, is SIGKILLed (its process, by pid) at the start
  of every period but the first (the warm-up); the supervisor restarts it. The rule: errors are
  counted on the 14 healthy containers only, and must be zero; the victim is invoked ten times a
  second by a probe of its own, whose errors are reported (they are expected) together with how
  long the victim took to serve again after each kill;
- a log-flooding container (`tests/support/containers/faulty.py`, FAULT=flood-stdout) on an
  endpoint of its own, writing to stdout as fast as it can: its log files must stay within
  (log backups + 1) x log max bytes at every sample;
- a slowloris client (`tests/reliability/hostile_client.py`) sending a request head one byte a
  second, over and over: the server must close each one at its header timeout.

Measured at the end of the warm-up period and at the end of the run, both times at rest (wrk
done, the probe and the slowloris held, the victim serving): the server's RSS (target: grows
less than 5 %); its open descriptors other than the router's pooled connections to containers
(target: back to the warm-up count or below) and those pooled connections (target: within
containers x --max-inflight, all established to live containers: a pool keeps its high-water
mark, so their count may rise without a leak); the number of container processes (target: the
same); the state folder's size apart from the flood's logs and the metric history (target:
grows less than 1 MiB; the flood's logs move between 2 and 3 MiB as they rotate, the metric
history grows with time by design, up to its retention). Sampled every two seconds in between:
the flood's log size, the server's RSS and descriptors, the state folder's size.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from tests.reliability.hostile_client import open_descriptors, slowloris_head

from bench.checks import WrongAnswer, expect_ok, post
from bench.context import Context
from bench.loadgen import WRK_SCRIPT, LoadToolError, require
from bench.machine import cpu_model, git_revision, load_average, now
from bench.payloads import write_bodies
from bench.polyhost_server import (
    ECHO_IMAGE,
    ECHO_PROGRAM,
    HOSTNAME_HEADER,
    PolyhostServer,
)
from bench.procs import Service, free_port
from bench.report import Section

KEY = "soak"
TITLE = "11. Soak: 15 containers under load, one SIGKILLed every period"
ROOT = Path(__file__).resolve().parents[2]
FAULTY_PROGRAM = ROOT / "tests" / "support" / "containers" / "faulty.py"
FAULTY_IMAGE = "bench/faulty"
ENDPOINT = "soak"
FLOOD_ENDPOINT = "soak-flood"
HEALTHY = [f"h{index:02d}" for index in range(1, 15)]
VICTIM = "victim"
CONTENT_TYPE = "application/json"
CONNECTIONS = 8
PERIOD_S = 60.0  # one kill per period; shorter runs use a fifth of the run
LOG_MAX_BYTES = 1 << 20
LOG_BACKUPS = 2
HEADER_TIMEOUT_S = 5.0
SAMPLE_EVERY_S = 2.0
PROBE_EVERY_S = 0.1
SETTLE_S = 60.0  # at most this long for descriptors to close and the victim to come back
RSS_GROWTH_TARGET = 0.05
DISK_GROWTH_TARGET = 1 << 20
HISTORY_DB = "metrics.db"  # the metric history (with its -wal and -shm files)
MARK = "SOAK_RUN"  # in every container's environment: this run's container processes
ROLE = "SOAK_ROLE"
UPSTREAM = "upstream"  # a keep-alive connection of the router to a live container
MAX_INFLIGHT = 64  # the server's default, given explicitly: the bound of a container's pool


# -- the server ----------------------------------------------------------------------------------
def _image_config(path: Path) -> Path:
    lines = []
    for image, program in ((ECHO_IMAGE, ECHO_PROGRAM), (FAULTY_IMAGE, FAULTY_PROGRAM)):
        lines += [f'[images."{image}"]', f'command = ["{sys.executable}", "{program}"]']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def _server(work: Path) -> Iterator[PolyhostServer]:
    """polyhost with small container logs, a short header timeout and its admin listener on a
    port of its own; a fresh state folder."""
    server = PolyhostServer(work)
    server.port = free_port()
    state = work / "state"
    shutil.rmtree(state, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "polyhost", "serve",
        "--port", str(server.port),
        "--admin-port", str(free_port()),
        "--state-dir", str(state),
        "--image-config", str(_image_config(work / "images.toml")),
        "--no-access-log",
        "--log-level", "warning",
        "--stop-grace", "5",
        "--log-max-bytes", str(LOG_MAX_BYTES),
        "--log-backups", str(LOG_BACKUPS),
        "--header-timeout", str(HEADER_TIMEOUT_S),
        "--max-inflight", str(MAX_INFLIGHT),
    ]  # fmt: skip
    server.service = Service("polyhost", command, work / "polyhost.log")
    server.service.start()
    try:
        server.service.wait_http(server.url + "/ping", timeout=60)
        yield server
    finally:
        server.stop()


# -- what is measured ----------------------------------------------------------------------------
def marked(run: str, role: str | None = None) -> list[psutil.Process]:
    """Live container processes of this run (by the marker in their environment)."""
    found = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            environment = process.environ()
            if environment.get(MARK) != run or process.status() == psutil.STATUS_ZOMBIE:
                continue
            if role is None or environment.get(ROLE) == role:
                found.append(process)
    return found


def folder_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file():
                total += path.stat().st_size
    return total


def flood_log_bytes(state: Path) -> int:
    """The flood container's log files (the current one and its backups), in bytes."""
    total = 0
    for path in (state / "containers" / FLOOD_ENDPOINT).glob("r*/*/i-*/flood/container.log*"):
        if path.suffix != ".idx":
            with contextlib.suppress(OSError):
                total += path.stat().st_size
    return total


@dataclass
class Sample:
    rss: int
    fds: int
    processes: int
    state_bytes: int
    flood_bytes: int
    history_bytes: int
    fd_kinds: dict[str, int]

    def upstream(self) -> int:
        """Connections of the router to live containers, established (the pools)."""
        return self.fd_kinds.get(f"{UPSTREAM} {psutil.CONN_ESTABLISHED}", 0)

    def stale(self) -> int:
        """Upstream connections not established, or to no live container's port."""
        return sum(
            count
            for kind, count in self.fd_kinds.items()
            if (kind.startswith(UPSTREAM) and kind != f"{UPSTREAM} {psutil.CONN_ESTABLISHED}")
            or kind.startswith("stale")
        )


def listening_ports(processes: list[psutil.Process]) -> set[int]:
    ports = set()
    for process in processes:
        with contextlib.suppress(psutil.Error):
            for connection in process.net_connections(kind="inet"):
                if connection.status == psutil.CONN_LISTEN:
                    ports.add(connection.laddr.port)
    return ports


def descriptor_kinds(pid: int, port: int, containers: set[int]) -> dict[str, int]:
    """The server's descriptors by kind: TCP sockets by role and state (an upstream connection
    to a port no live container of this run listens on is "stale"), everything else."""
    kinds: dict[str, int] = {}
    connections = psutil.Process(pid).net_connections(kind="inet")
    for connection in connections:
        if not connection.raddr:
            kind = "listening"
        elif connection.laddr.port == port:
            kind = f"client {connection.status}"
        elif connection.raddr.port not in containers:
            kind = f"stale upstream {connection.status}"
        else:
            kind = f"{UPSTREAM} {connection.status}"
        kinds[kind] = kinds.get(kind, 0) + 1
    kinds["not TCP"] = open_descriptors(pid) - len(connections)
    return kinds


def sample(server: PolyhostServer, run: str, state: Path) -> Sample:
    assert server.service is not None
    processes = marked(run)
    return Sample(
        rss=server.rss()[0],
        fds=open_descriptors(server.service.pid),
        processes=len(processes),
        state_bytes=folder_bytes(state),
        flood_bytes=flood_log_bytes(state),
        history_bytes=sum(
            path.stat().st_size for path in state.glob(f"{HISTORY_DB}*") if path.is_file()
        ),
        fd_kinds=descriptor_kinds(server.service.pid, server.port, listening_ports(processes)),
    )


class Sampler(threading.Thread):
    """Samples every SAMPLE_EVERY_S; `take()` hands over (and forgets) what it collected."""

    def __init__(self, probe: Callable[[], Sample]) -> None:
        super().__init__(daemon=True)
        self._probe = probe
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_EVERY_S):
            taken = self._probe()
            with self._lock:
                self._samples.append(taken)

    def take(self) -> list[Sample]:
        with self._lock:
            taken, self._samples = self._samples, []
        return taken

    def stop(self) -> None:
        self._done.set()
        self.join(30)


# -- the background clients ----------------------------------------------------------------------
class Background(threading.Thread):
    """Runs `attempt` over and over; `hold()` waits for the attempt under way to end and keeps
    the next from starting (a measurement at rest), `release()` lets it go on."""

    def __init__(self, attempt: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self._attempt = attempt
        self._go = threading.Event()
        self._go.set()
        self._idle = threading.Event()
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            if not self._go.is_set():
                self._idle.set()
                self._go.wait(1.0)
                continue
            self._idle.clear()
            self._attempt()

    def hold(self, timeout: float = 60.0) -> None:
        self._go.clear()
        if not self._idle.wait(timeout):
            raise RuntimeError("a background client did not finish its attempt in time")

    def release(self) -> None:
        self._go.set()

    def stop(self) -> None:
        self._done.set()
        self._go.set()
        self.join(60)


@dataclass
class Probe:
    """The victim's own client: one request every PROBE_EVERY_S, results with their time."""

    url: str
    body: bytes
    results: list[tuple[float, bool]] = field(default_factory=list)

    def attempt(self) -> None:
        sent = time.monotonic()
        try:
            status, _ = post(self.url, self.body, CONTENT_TYPE, {HOSTNAME_HEADER: VICTIM}, 10)
        except OSError:
            status = 0
        self.results.append((sent, status == 200))
        time.sleep(PROBE_EVERY_S)

    def back_after(self, killed_at: float) -> float | None:
        """Seconds from a kill to the first request sent after it that succeeded (so it was
        answered by the restarted victim), None while there is none."""
        return next((t - killed_at for t, ok in self.results if t > killed_at and ok), None)

    def wait_back(self, killed_at: float, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.back_after(killed_at) is None and time.monotonic() < deadline:
            time.sleep(0.2)

    def errors_between(self, start: float, end: float) -> int:
        return sum(1 for t, ok in self.results if start <= t < end and not ok)


@dataclass
class Slowloris:
    """Request heads sent one byte a second, never finished: how long the server held each."""

    port: int
    held_s: list[float] = field(default_factory=list)
    closed: list[bool] = field(default_factory=list)

    def attempt(self) -> None:
        try:
            answer, held = slowloris_head(self.port, every_s=1.0, give_up_s=HEADER_TIMEOUT_S * 4)
        except OSError:
            return
        self.held_s.append(held)
        self.closed.append(answer.closed or answer.status is not None)


# -- the load ------------------------------------------------------------------------------------
@dataclass
class WrkResult:
    requests: int
    errors: int
    rps: float
    p99_ms: float


def start_wrk(url: str, body_file: Path, seconds: int) -> subprocess.Popen[bytes]:
    command = [
        require("wrk"), "-t", "1", "-c", str(CONNECTIONS), "-d", f"{seconds}s",
        "--timeout", "30s", "-s", str(WRK_SCRIPT), url, "--", str(body_file), CONTENT_TYPE,
        f"rotate={HOSTNAME_HEADER}={','.join(HEALTHY)}",
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish_wrk(process: subprocess.Popen[bytes], seconds: int) -> WrkResult:
    try:
        out, err = process.communicate(timeout=seconds + 120)
    except subprocess.TimeoutExpired:
        process.kill()
        raise LoadToolError(f"wrk did not finish within {seconds + 120} s") from None
    line = next((x for x in out.decode().splitlines() if x.startswith("BENCH-JSON ")), None)
    if process.returncode != 0 or line is None:
        raise LoadToolError(f"wrk exited {process.returncode}: {err.decode()[-1500:]}")
    data = json.loads(line[len("BENCH-JSON ") :])
    return WrkResult(
        requests=int(data["requests"]),
        errors=sum(int(v) for v in data["errors"].values()),
        rps=int(data["requests"]) / (data["duration_us"] / 1e6),
        p99_ms=data["p99_us"] / 1000.0,
    )


# -- the run -------------------------------------------------------------------------------------
@dataclass
class Period:
    kind: str
    wrk: WrkResult
    killed_pid: int | None
    back_after_s: float | None
    victim_errors: int
    samples: list[Sample]
    end: Sample


def _kill_victim(run: str) -> tuple[int, float]:
    """SIGKILL the victim's process; its pid and when (after finding it, which takes a while)."""
    victims = marked(run, VICTIM)
    if len(victims) != 1:
        raise WrongAnswer(f"expected one victim process, found {len(victims)}")
    killed_at = time.monotonic()
    victims[0].send_signal(signal.SIGKILL)
    return int(victims[0].pid), killed_at


def at_rest(server: PolyhostServer) -> None:
    """Wait (at most SETTLE_S) until the server holds no client connection: the clients have
    stopped, and the server has closed its side of what they closed."""
    assert server.service is not None
    process = psutil.Process(server.service.pid)

    def no_clients() -> bool:
        return not any(
            c.raddr and c.laddr.port == server.port for c in process.net_connections("inet")
        )

    _wait(no_clients, SETTLE_S)


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _periods(duration_s: float) -> tuple[int, int]:
    """(number of periods, seconds each): one a minute, or five for a run shorter than 4 min."""
    period = PERIOD_S if duration_s >= 4 * PERIOD_S else duration_s / 5
    count = max(2, round(duration_s / period))
    return count, max(1, math.ceil(period))


def soak(ctx: Context, duration_s: float, command: str) -> Section:
    """Run the soak for `duration_s` and return its section; `command` reruns it."""
    section = Section(KEY, TITLE)
    section.add(
        f"Run {now()} at git {git_revision()} (load average {load_average()} at the start) "
        f"with `{command}`, on {cpu_model()}, {os.cpu_count()} cores "
        f"(shared with other work: no CPU pinning).",
        "",
    )
    work = ctx.work(KEY)
    body_file = write_bodies(work / "bodies", {"1KB": 1024})["1KB"]
    body = body_file.read_bytes()
    run_id = uuid.uuid4().hex
    count, period_s = _periods(duration_s)
    state = work / "polyhost" / "state"
    with _server(work / "polyhost") as server:
        assert server.service is not None
        containers: list[dict[str, Any]] = [
            {"Image": ECHO_IMAGE, "ContainerHostname": name, "Environment": {MARK: run_id}}
            for name in HEALTHY
        ]
        containers.append(
            {
                "Image": ECHO_IMAGE,
                "ContainerHostname": VICTIM,
                "Environment": {MARK: run_id, ROLE: VICTIM},
            }
        )
        server.deploy(ENDPOINT, containers, mode="Direct")
        flood = {
            "Image": FAULTY_IMAGE,
            "ContainerHostname": "flood",
            "Environment": {MARK: run_id, "FAULT": "flood-stdout", "FAULT_NAME": "flood"},
        }
        server.deploy(FLOOD_ENDPOINT, [flood], mode="Direct")
        url = server.invocations_url(ENDPOINT)
        for name in [*HEALTHY, VICTIM]:
            expect_ok(url, body, CONTENT_TYPE, {HOSTNAME_HEADER: name}, same_body=True)
        probe = Probe(url, body)
        loris = Slowloris(server.port)
        clients = [Background(probe.attempt), Background(loris.attempt)]
        sampler = Sampler(lambda: sample(server, run_id, state))
        for thread in (*clients, sampler):
            thread.start()
        periods: list[Period] = []
        baseline: Sample | None = None
        started = time.monotonic()
        wrk: subprocess.Popen[bytes] | None = None
        try:
            for index in range(count):
                wrk = start_wrk(url, body_file, period_s)
                killed_pid, killed_at = None, time.monotonic()
                if index > 0:
                    time.sleep(min(2.0, period_s / 10))  # the load is on when the kill lands
                    killed_pid, killed_at = _kill_victim(run_id)
                result = finish_wrk(wrk, period_s)
                if killed_pid is not None:  # the next kill needs the victim back
                    probe.wait_back(killed_at, SETTLE_S)
                for client in clients:
                    client.hold()
                at_rest(server)
                end = sample(server, run_id, state)
                if index == 0:
                    baseline = end
                periods.append(
                    Period(
                        kind="warm-up" if index == 0 else "kill",
                        wrk=result,
                        killed_pid=killed_pid,
                        back_after_s=probe.back_after(killed_at) if killed_pid else None,
                        victim_errors=probe.errors_between(killed_at, time.monotonic()),
                        samples=sampler.take(),
                        end=end,
                    )
                )
                print(f"  {KEY}: period {index + 1}/{count} done", flush=True)
                for client in clients:
                    client.release()
            elapsed = time.monotonic() - started
            for client in clients:
                client.hold()
            assert baseline is not None
            _wait(lambda: len(marked(run_id)) >= baseline.processes, SETTLE_S)
            at_rest(server)
            final = sample(server, run_id, state)
        finally:
            if wrk is not None and wrk.poll() is None:  # interrupted mid-period
                wrk.kill()
                wrk.wait()
            sampler.stop()
            for client in clients:
                client.stop()
    _report(section, periods, baseline, final, loris, elapsed, period_s)
    ctx.save_raw(
        KEY,
        {
            "duration_s": elapsed,
            "periods": [vars(p) | {"wrk": vars(p.wrk)} for p in periods],
            "baseline": vars(baseline),
            "final": vars(final),
            "slowloris_held_s": loris.held_s,
        },
    )
    return section


def _mib(value: float) -> str:
    return f"{value / 2**20:.1f}"


def _report(
    section: Section,
    periods: list[Period],
    baseline: Sample,
    final: Sample,
    loris: Slowloris,
    elapsed: float,
    period_s: int,
) -> None:
    flood_bound = (LOG_BACKUPS + 1) * LOG_MAX_BYTES
    section.add(
        f"{elapsed / 60:.1f} minutes in {len(periods)} periods of {period_s} s. Load: wrk, "
        f"{CONNECTIONS} connections, 1 KB JSON, rotating over the {len(HEALTHY)} healthy "
        f"containers of a {len(HEALTHY) + 1}-container Direct endpoint of the light echo "
        "container. The 15th container (the victim) is SIGKILLed early in every period after "
        "the warm-up; errors count on the healthy containers only (the victim has its own probe, "
        f"10 requests/s). Beside them: a container flooding its stdout (logs of "
        f"{_mib(LOG_MAX_BYTES)} MiB x {LOG_BACKUPS + 1} files), and a slowloris client (one "
        f"header byte a second, header timeout {HEADER_TIMEOUT_S:g} s). RSS, descriptors, "
        "processes and disk at the end of each period are measured at rest (wrk done, probe "
        "and slowloris held).",
        "",
    )
    rows: list[list[object]] = []
    for index, period in enumerate(periods, 1):
        flood_max = max([s.flood_bytes for s in period.samples] + [period.end.flood_bytes])
        rows.append(
            [
                f"{index} {period.kind}",
                period.wrk.requests,
                period.wrk.errors,
                period.wrk.rps,
                period.wrk.p99_ms,
                "-" if period.back_after_s is None else f"{period.back_after_s:.1f}",
                period.victim_errors,
                _mib(period.end.rss),
                period.end.fds,
                period.end.processes,
                _mib(period.end.state_bytes),
                _mib(flood_max),
            ]
        )
    section.table(
        [
            "period",
            "requests",
            "errors (healthy)",
            "req/s",
            "p99 ms",
            "victim back after s",
            "victim errors",
            "server RSS MiB",
            "server fds",
            "container processes",
            "state MiB",
            "flood log max MiB",
        ],
        rows,
    )
    errors = sum(p.wrk.errors for p in periods)
    requests = sum(p.wrk.requests for p in periods)
    section.target(
        "errors on the healthy containers",
        f"{errors} of {requests:,} requests",
        "0",
        errors == 0 and requests > 0,
    )
    growth = (final.rss - baseline.rss) / baseline.rss
    section.target(
        "server RSS growth, end of warm-up to end",
        f"{_mib(baseline.rss)} → {_mib(final.rss)} MiB ({growth:+.1%})",
        f"< {RSS_GROWTH_TARGET:.0%}",
        growth < RSS_GROWTH_TARGET,
    )
    kinds = sorted(set(baseline.fd_kinds) | set(final.fd_kinds))
    section.add("The server's descriptors at rest, by kind (TCP by role and state):", "")
    section.table(
        ["when", *kinds],
        [
            [when, *(taken.fd_kinds.get(kind, 0) for kind in kinds)]
            for when, taken in (("end of warm-up", baseline), ("end", final))
        ],
    )
    pooled = (baseline.upstream(), final.upstream())
    section.add(
        "The router keeps each container's connections for reuse, as many as it ever had in "
        "flight at once (no idle timeout; bounded by `--max-inflight`), so their count at rest "
        "is a high-water mark that may rise during a run without anything leaking: they are "
        "held to their bound and to live containers, every other descriptor to the count at "
        "the end of the warm-up.",
        "",
    )
    section.target(
        "server descriptors at rest other than pooled upstream connections, warm-up to end",
        f"{baseline.fds - pooled[0]} → {final.fds - pooled[1]} (all descriptors "
        f"{baseline.fds} → {final.fds})",
        "back to the warm-up count or below",
        final.fds - pooled[1] <= baseline.fds - pooled[0],
    )
    stale = final.stale()
    bound = (len(HEALTHY) + 2) * MAX_INFLIGHT
    section.target(
        "pooled upstream connections at rest, end",
        f"{pooled[1]} (after warm-up {pooled[0]}), {stale} not established to a live container",
        f"≤ {bound} (containers x --max-inflight), 0 stale",
        pooled[1] <= bound and stale == 0,
    )
    section.target(
        "container processes, end of warm-up to end",
        f"{baseline.processes} → {final.processes}",
        "the same",
        final.processes == baseline.processes,
    )
    history = final.history_bytes - baseline.history_bytes
    hours = (elapsed - period_s) / 3600
    section.add(
        "The state folder holds two things that grow by design: the flood's log (bounded by its "
        "rotation, a target below) and the metric history (`metrics.db` and its write-ahead "
        "log: minute roll-ups kept `--metrics-retention-days`, 15 by default; scenario 7 "
        "measures it at 36.8 MiB a day for 15 containers, and its in-memory rings, which fill "
        "for 3 hours, in the server's RSS). The metric history grew "
        f"{_mib(baseline.history_bytes)} → {_mib(final.history_bytes)} MiB here "
        f"({history / 2**20 / hours:,.1f} MiB an hour, the write-ahead log not yet "
        "checkpointed into the database included); the disk target is on everything else.",
        "",
    )
    before, after = (x.state_bytes - x.flood_bytes - x.history_bytes for x in (baseline, final))
    section.target(
        "state folder growth apart from the flood's log and the metric history, "
        "end of warm-up to end",
        f"{before / 2**10:,.0f} → {after / 2**10:,.0f} KiB ({(after - before) / 2**10:+,.0f} "
        f"KiB; the whole folder {_mib(baseline.state_bytes)} → "
        f"{_mib(final.state_bytes)} MiB)",
        f"< {_mib(DISK_GROWTH_TARGET)} MiB",
        after - before < DISK_GROWTH_TARGET,
    )
    flood_max = max(s.flood_bytes for p in periods for s in [*p.samples, p.end])
    section.target(
        "flood container's log on disk, largest sample",
        f"{_mib(flood_max)} MiB",
        f"≤ {_mib(flood_bound)} MiB ((backups + 1) x max bytes)",
        flood_max <= flood_bound,
    )
    closed = sum(loris.closed)
    held = max(loris.held_s, default=math.nan)
    section.target(
        "slowloris connections closed by the server",
        f"{closed} of {len(loris.closed)} (longest held {held:.1f} s)",
        f"all, at the {HEADER_TIMEOUT_S:g} s header timeout",
        closed == len(loris.closed) > 0,
    )
    back = [p.back_after_s for p in periods if p.killed_pid is not None]
    section.target(
        "the victim serves again after every kill",
        f"{sum(b is not None for b in back)} of {len(back)} kills",
        "all",
        all(b is not None for b in back),
    )


def duration(ctx: Context) -> float:
    return 20.0 if ctx.quick else 600.0


def run(ctx: Context) -> Section:
    """The harness's entry (`python -m bench soak`): 10 minutes, or 20 s with --quick."""
    return soak(ctx, duration(ctx), ctx.command(KEY))
