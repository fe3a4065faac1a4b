"""Scenario 15: InvokeEndpointWithResponseStream, time to first byte and throughput.

The same streaming container (bench/containers/stream.py) is called directly (`POST
/invocations`, its chunked answer) and through polyhost (`POST /endpoints/NAME/invocations-
response-stream`, the answer as event-stream PayloadParts), in the same run, by the same client:
one kept-alive socket, a request written in one `sendall`, the answer read with `recv` until
its last chunk. Time to first byte is from the request's write to the first `recv` that holds
a body byte (the head and the first part come in one write on both sides); throughput is a
10 MB answer in 64 KiB chunks, from the write to its last byte. For the time to first byte the
client runs on CPU 0 and the serving side (polyhost and the container, or the container alone)
on CPU 1, as in scenario 1; the throughput runs unpinned, as scenario 4's does (a relay and
its container on one core would measure the core's sharing, not the relay).
"""

from __future__ import annotations

import os
import socket
import statistics
import sys
import time
from pathlib import Path

from bench.context import Context
from bench.cpus import ALL_CPUS, set_tree_affinity
from bench.polyhost_server import STREAM_IMAGE, STREAM_PROGRAM, PolyhostServer
from bench.procs import Service, free_port
from bench.report import Section

RELAY_PROGRAM = Path(__file__).parents[1] / "containers" / "relay.py"
KEY = "streaming"
TITLE = "15. Response streaming: time to first byte and throughput"
ENDPOINT = "bench-stream"
TOTAL = 10 * 1024 * 1024
CHUNK = 64 * 1024
_END = b"\r\n0\r\n\r\n"


class Client:
    """One kept-alive connection to `path` on 127.0.0.1:`port`."""

    def __init__(self, port: int, path: str) -> None:
        self._sock = socket.create_connection(("127.0.0.1", port))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._path = path.encode()

    def call(self, total: int, chunk: int) -> tuple[float, float, int]:
        """(seconds to the first body byte, seconds to the end, bytes received)."""
        body = b"%d %d" % (total, chunk)
        request = b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n%s" % (
            self._path,
            len(body),
            body,
        )
        sock = self._sock
        started = time.perf_counter()
        sock.sendall(request)
        first = 0.0
        received = 0
        tail = b""
        head_done = False
        while True:
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("closed mid-answer")
            received += len(data)
            if not head_done:
                cut = data.find(b"\r\n\r\n")
                if cut >= 0 and cut + 4 < len(data):
                    head_done = True
                    first = time.perf_counter() - started
                elif cut >= 0:
                    head_done = True  # a head alone: the first body byte comes next
                    data = b""
            elif not first:
                first = time.perf_counter() - started
            tail = (tail + data)[-len(_END) :]
            if tail == _END:
                return first, time.perf_counter() - started, received

    def close(self) -> None:
        self._sock.close()


def _first_bytes(client: Client, calls: int) -> list[float]:
    for _ in range(20):  # warm: connections, caches
        client.call(100, 100)
    return [client.call(100, 100)[0] * 1e3 for _ in range(calls)]


def _rates(client: Client, big_calls: int) -> list[float]:
    client.call(TOTAL, CHUNK)
    rates = []
    for _ in range(big_calls):
        _, seconds, _ = client.call(TOTAL, CHUNK)
        rates.append(TOTAL / seconds / 1e6)
    return rates


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    ttfb_calls = 200 if ctx.quick else 2000
    big_calls = 3 if ctx.quick else 15
    port = free_port()
    direct = Service(
        "stream (direct)", [sys.executable, str(STREAM_PROGRAM), str(port)], work / "direct.log"
    )
    relay_port = free_port()
    relay = Service(
        "minimal relay",
        [sys.executable, str(RELAY_PROGRAM), str(relay_port), str(port)],
        work / "relay.log",
    )
    results: dict[str, dict[str, float]] = {}
    with direct, relay, PolyhostServer(work / "polyhost") as server:
        direct.wait_http(f"http://127.0.0.1:{port}/ping")
        relay.wait_http(f"http://127.0.0.1:{relay_port}/ping")
        server.deploy(ENDPOINT, [{"Image": STREAM_IMAGE}])
        assert server.service is not None
        for label, pid, client_port, path in (
            ("direct", direct.pid, port, "/invocations"),
            ("minimal relay", relay.pid, relay_port, "/invocations"),
            (
                "polyhost",
                server.service.pid,
                server.port,
                f"/endpoints/{ENDPOINT}/invocations-response-stream",
            ),
        ):
            client = Client(client_port, path)
            try:
                set_tree_affinity(pid, [1])
                os.sched_setaffinity(0, {0})  # this process: the client
                firsts = sorted(_first_bytes(client, ttfb_calls))
                set_tree_affinity(pid, None)
                os.sched_setaffinity(0, ALL_CPUS)
                rates = _rates(client, big_calls)  # nothing pinned, as scenario 4's throughput
            finally:
                client.close()
                set_tree_affinity(pid, None)
                os.sched_setaffinity(0, ALL_CPUS)
            results[label] = {
                "ttfb_p50_ms": statistics.median(firsts),
                "ttfb_p99_ms": firsts[min(len(firsts) - 1, int(len(firsts) * 0.99))],
                "mb_per_s": statistics.median(rates),
            }
            print(f"  {KEY}: {label} done", flush=True)
    base, through = results["direct"], results["polyhost"]
    added = through["ttfb_p50_ms"] - base["ttfb_p50_ms"]
    share = through["mb_per_s"] / base["mb_per_s"]
    ceiling = results["minimal relay"]["mb_per_s"] / base["mb_per_s"]
    of_ceiling = through["mb_per_s"] / results["minimal relay"]["mb_per_s"]
    section.add(
        f"Time to first byte: {ttfb_calls} calls answering 100 bytes, one connection, one at a "
        f"time, client on CPU 0 and serving side on CPU 1. Throughput: {big_calls} answers of "
        "10 MB in 64 KiB chunks (median), nothing pinned. Direct and polyhost measured in the "
        "same run, by the same client.",
        "",
    )
    section.table(
        ["path", "TTFB p50 ms", "TTFB p99 ms", "10 MB stream MB/s"],
        [
            [label, r["ttfb_p50_ms"], r["ttfb_p99_ms"], r["mb_per_s"]]
            for label, r in results.items()
        ],
    )
    section.target(
        "time to first byte added by polyhost (p50)", f"{added:.3f} ms", "≤ +1 ms", added <= 1.0
    )
    section.add(
        "",
        f"The minimal relay (bench/containers/relay.py: TCP piped both ways, no parsing or "
        f"framing) reaches {ceiling:.0%} of direct: the second crossing of loopback any relay "
        f"on this machine pays. polyhost reaches {of_ceiling:.0%} of that relay.",
        "",
    )
    section.target("10 MB stream throughput vs direct", f"{share:.0%}", "≥ 80%", share >= 0.8)
    ctx.save_raw(KEY, results)
    return section
