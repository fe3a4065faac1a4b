"""Side by side: several servers of the same model, one at a time, the same requests and tools.

Each system is started, checked (its answer must be a prediction), warmed up (wrk, 2 s), then
measured: latency at concurrency 1 with wrk (one connection, µs percentiles) and hey, and
throughput and latency at concurrency 32 with wrk. At concurrency 1 the load generator is pinned
to CPU 0 and the server may use both cores; at 32 nothing is pinned. Only one system runs at a
time, and each is stopped before the next starts.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench import profile
from bench.checks import WrongAnswer, expect_ok
from bench.loadgen import Latency, hey_latency, wrk_run
from bench.procs import LOADGEN_CPUS, Service
from bench.report import Section


@dataclass
class Running:
    url: str
    service: Service
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class System:
    name: str
    start: Callable[[], contextlib.AbstractContextManager[Running]]
    body: Path
    content_type: str
    summarize: Callable[[bytes], str]
    profile: bool = False  # py-spy over its whole process tree under c=32 after measuring


@dataclass
class Measured:
    name: str
    ready_s: float
    answer: str
    own_rss: int
    total_rss: int
    hey_c1: Latency
    wrk_c1: Latency
    wrk_c32: Latency
    hotspots: list[profile.Hotspot] = field(default_factory=list)
    process_shares: list[tuple[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    hey_requests: int = 1500
    c1_seconds: float = 4.0
    c32_seconds: float = 8.0
    warmup_seconds: float = 2.0
    profile_seconds: float = 0.0  # 0: no profile, even of a system that asks for one


def measure(system: System, plan: Plan, work: Path) -> Measured:
    started = time.perf_counter()
    with system.start() as running:
        ready = time.perf_counter() - started
        body = system.body.read_bytes()
        answer = _summary(
            system, expect_ok(running.url, body, system.content_type, running.headers)
        )
        wrk_run(
            running.url,
            system.body,
            system.content_type,
            running.headers,
            connections=32,
            duration_s=plan.warmup_seconds,
        )
        wrk_c1 = wrk_run(
            running.url,
            system.body,
            system.content_type,
            running.headers,
            connections=1,
            duration_s=plan.c1_seconds,
            cpus=LOADGEN_CPUS,
        )
        hey_c1 = hey_latency(
            running.url,
            system.body,
            system.content_type,
            running.headers,
            plan.hey_requests,
            cpus=LOADGEN_CPUS,
        )
        wrk_c32 = wrk_run(
            running.url,
            system.body,
            system.content_type,
            running.headers,
            connections=32,
            duration_s=plan.c32_seconds,
        )
        own, total = running.service.rss()
        hot: list[profile.Hotspot] = []
        shares: list[tuple[str, float]] = []
        if system.profile and plan.profile_seconds > 0:
            hot, shares = _profile(system, running, plan.profile_seconds, work)
    print(
        f"  {system.name}: {wrk_c32.rps:.0f} req/s at c=32, p50 {wrk_c1.p50_ms:.2f} ms at c=1",
        flush=True,
    )
    return Measured(system.name, ready, answer, own, total, hey_c1, wrk_c1, wrk_c32, hot, shares)


def _profile(
    system: System, running: Running, seconds: float, work: Path
) -> tuple[list[profile.Hotspot], list[tuple[str, float]]]:
    """py-spy over the system's process tree while wrk keeps 32 requests in flight."""
    out = work / f"profile-{re.sub(r'[^a-z0-9]+', '-', system.name.lower())}.txt"
    sampler = profile.start(running.service.pid, seconds, out, subprocesses=True)
    if sampler is None:
        return [], []
    wrk_run(
        running.url,
        system.body,
        system.content_type,
        running.headers,
        connections=32,
        duration_s=seconds,
    )
    hot = profile.finish(sampler, out, top=15)
    return hot, profile.processes(out.read_text(encoding="utf-8", errors="replace"))


def _summary(system: System, answer: bytes) -> str:
    try:
        return system.summarize(answer)
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise WrongAnswer(f"{system.name} answered {answer[:300]!r}: {error}") from None


def measure_all(systems: list[System], plan: Plan, work: Path) -> tuple[list[Measured], list[str]]:
    """Every system in turn; one that fails is reported and the others still run."""
    results: list[Measured] = []
    failures: list[str] = []
    for system in systems:
        try:
            results.append(measure(system, plan, work))
        except Exception as error:
            failures.append(f"{system.name}: {type(error).__name__}: {error}")
            print(f"  {system.name} FAILED: {error}", flush=True)
    return results, failures


def table(section: Section, results: list[Measured]) -> None:
    mb = 1024 * 1024
    section.table(
        [
            "system",
            "req/s c=32",
            "p50 c=32",
            "p99 c=32",
            "p50 c=1 (wrk)",
            "p99 c=1 (wrk)",
            "p50 c=1 (hey)",
            "p99 c=1 (hey)",
            "errors",
            "ready in s",
            "RSS MB (all processes)",
            "answer",
        ],
        [
            [
                m.name,
                m.wrk_c32.rps,
                m.wrk_c32.p50_ms,
                m.wrk_c32.p99_ms,
                m.wrk_c1.p50_ms,
                m.wrk_c1.p99_ms,
                m.hey_c1.p50_ms,
                m.hey_c1.p99_ms,
                m.wrk_c32.errors + m.wrk_c1.errors + m.hey_c1.errors,
                m.ready_s,
                m.total_rss / mb,
                m.answer,
            ]
            for m in results
        ],
    )


def hotspots_note(section: Section, results: list[Measured]) -> None:
    """The profile of each system that was profiled (see `System.profile`)."""
    for m in results:
        if not m.hotspots:
            continue
        section.add(
            f"Profile of {m.name} under the c=32 load (py-spy over the server and its "
            "containers, 250 Hz). Busy samples per process:",
            "",
        )
        section.table(["process", "share"], [[p, f"{pct:.1f}%"] for p, pct in m.process_shares])
        section.add(
            "Hottest frames (self = innermost frame; time in system calls and native "
            "code counts to the Python frame that called it):",
            "",
        )
        section.table(
            ["frame", "self", "total"],
            [[h.frame, f"{h.self_pct:.1f}%", f"{h.total_pct:.1f}%"] for h in m.hotspots],
        )


def failures_note(section: Section, failures: list[str]) -> None:
    if failures:
        section.add(
            "Systems that could not be measured in this run:", "", "```", *failures, "```", ""
        )


@contextlib.contextmanager
def nothing() -> Iterator[None]:
    yield None
