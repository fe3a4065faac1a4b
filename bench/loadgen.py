"""The load tools, driven the same way for every system compared: hey, wrk, an open-loop client.

- `hey_latency`: hey at concurrency 1 (closed loop), latencies from its per-request CSV. hey
  prints times with four decimals, so its percentiles are 0.1 ms apart; `wrk_run` at one
  connection gives the same percentiles to the microsecond, and the tables show both.
- `wrk_run`: wrk with `wrk/post.lua`, a POST body from a file and extra headers; throughput and
  exact latency percentiles from the script's JSON line.
- `open_loop`: `bench.openloop` in its own process, for latency at a fixed offered rate.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.procs import pinned

WRK_SCRIPT = Path(__file__).parent / "wrk" / "post.lua"


class LoadToolError(RuntimeError):
    """A load tool failed or is missing; the message says which and why."""


def require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise LoadToolError(
            f"{tool} is not installed: `apt-get install {tool}` (Debian's package) and run again."
        )
    return path


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(pct / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True)
class Latency:
    """One run's latencies in milliseconds (and what it cost to get them)."""

    tool: str
    requests: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    rps: float


def _run(command: list[str], timeout: float) -> str:
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise LoadToolError(f"{command[0]} did not finish within {timeout:g} s") from None
    if done.returncode != 0:
        raise LoadToolError(
            f"{' '.join(command[:6])} ... exited {done.returncode}: "
            f"{done.stderr.decode(errors='replace')[-2000:]}"
        )
    return done.stdout.decode(errors="replace")


def hey_latency(
    url: str,
    body_file: Path,
    content_type: str,
    headers: dict[str, str] | None = None,
    requests: int = 2000,
    cpus: str | None = None,
) -> Latency:
    """hey -c 1 -n REQUESTS: closed-loop latency, one request at a time."""
    command = [
        require("hey"),
        "-n",
        str(requests),
        "-c",
        "1",
        "-m",
        "POST",
        "-D",
        str(body_file),
        "-T",
        content_type,
        "-o",
        "csv",
        "-t",
        "60",
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    output = _run(pinned(command, cpus), timeout=600)
    times: list[float] = []
    errors = 0
    last_offset = 0.0
    for line in output.splitlines()[1:]:
        fields = line.split(",")
        if len(fields) < 8:
            continue
        times.append(float(fields[0]) * 1000.0)
        if fields[6] != "200":
            errors += 1
        last_offset = max(last_offset, float(fields[7]) + float(fields[0]))
    if not times:
        raise LoadToolError(f"hey reported no requests for {url}: {output[-500:]}")
    times.sort()
    return Latency(
        tool="hey",
        requests=len(times),
        errors=errors + max(0, requests - len(times)),
        p50_ms=percentile(times, 50),
        p90_ms=percentile(times, 90),
        p99_ms=percentile(times, 99),
        mean_ms=sum(times) / len(times),
        rps=len(times) / last_offset if last_offset > 0 else math.nan,
    )


def wrk_run(
    url: str,
    body_file: Path,
    content_type: str,
    headers: dict[str, str] | None = None,
    connections: int = 32,
    duration_s: float = 10.0,
    threads: int = 1,
    cpus: str | None = None,
    rotate: tuple[str, Sequence[str]] | None = None,
) -> Latency:
    """wrk -c CONNECTIONS -d DURATION: throughput and exact latency percentiles."""
    command = [
        require("wrk"),
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, math.ceil(duration_s))}s",
        "--timeout",
        "30s",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        str(body_file),
        content_type,
    ]
    for name, value in (headers or {}).items():
        command.append(f"{name}={value}")
    if rotate is not None:
        command.append(f"rotate={rotate[0]}={','.join(rotate[1])}")
    return wrk_latency(_run(pinned(command, cpus), timeout=duration_s + 120), url, duration_s)


def wrk_script_run(
    url: str,
    script: Path,
    script_args: Sequence[str],
    connections: int,
    duration_s: float,
    cpus: str | None = None,
) -> Latency:
    """wrk with a script of bench/wrk/ that prints wrk_latency's BENCH-JSON line."""
    command = [
        require("wrk"), "-t", "1", "-c", str(connections),
        "-d", f"{max(1, math.ceil(duration_s))}s", "--timeout", "30s",
        "-s", str(script), url, "--", *script_args,
    ]  # fmt: skip
    return wrk_latency(_run(pinned(command, cpus), timeout=duration_s + 120), url, duration_s)


def wrk_latency(output: str, url: str, duration_s: float) -> Latency:
    """The run's numbers from the BENCH-JSON line the bench/wrk/ scripts print when done."""
    line = next((x for x in output.splitlines() if x.startswith("BENCH-JSON ")), None)
    if line is None:
        raise LoadToolError(f"wrk printed no result for {url}:\n{output[-1500:]}")
    data = json.loads(line[len("BENCH-JSON ") :])
    requests = int(data["requests"])
    if requests == 0:
        raise LoadToolError(f"wrk completed no request in {duration_s:g} s against {url}")
    errors = sum(int(v) for v in data["errors"].values())
    return Latency(
        tool="wrk",
        requests=requests,
        errors=errors,
        p50_ms=data["p50_us"] / 1000.0,
        p90_ms=data["p90_us"] / 1000.0,
        p99_ms=data["p99_us"] / 1000.0,
        mean_ms=data["mean_us"] / 1000.0,
        rps=requests / (data["duration_us"] / 1e6),
    )


@dataclass(frozen=True)
class OpenLoopResult:
    offered_rps: float
    achieved_rps: float
    sent: int
    completed: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    error_kinds: dict[str, int]


def open_loop(
    url: str,
    body_file: Path,
    content_type: str,
    rate: float,
    duration_s: float,
    rotate: tuple[str, Sequence[str]] | None = None,
    max_connections: int = 256,
    cpus: str | None = None,
) -> OpenLoopResult:
    """Requests sent on a fixed schedule whatever the answers; latency from the planned send."""
    command = [
        sys.executable,
        "-m",
        "bench.openloop",
        url,
        str(body_file),
        content_type,
        "--rate",
        f"{rate:g}",
        "--duration",
        f"{duration_s:g}",
        "--max-connections",
        str(max_connections),
    ]
    if rotate is not None:
        command += ["--rotate", f"{rotate[0]}={','.join(rotate[1])}"]
    output = _run(pinned(command, cpus), timeout=duration_s + 120)
    data = json.loads(output.strip().splitlines()[-1])
    return OpenLoopResult(**data)
