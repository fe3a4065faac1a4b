"""Scenario 9: what access control costs an invocation (SigV4 check + cached policy decision).

Two polyhost servers in the same run, the same light echo container behind each: one started
without `--auth-file`, one with a principals file whose policy allows InvokeEndpoint only for
the container named in `sagemaker:TargetContainerHostname`, so every request is verified and
goes through a (cached) policy decision. Measured alternately, the serving side pinned to CPU 1
and wrk to CPU 0:

- 1 KB at concurrency 1 (wrk, one connection): p50 with auth on and off;
- 1 KB at concurrency 32 (wrk): throughput with auth on as a share of auth off;
- the payload hash of a 5 MB body: `SigV4Verifier.verify` in process, and end to end.

The comparison is like for like. Both sides send the same 256 different 1 KB bodies in turn,
through the same wrk script (`wrk/replay.lua`), over the same keep-alive connections, with the
same headers but for the two a signature adds (`Authorization`, `X-Amz-Date`). The signed
requests are prepared by botocore just before each run (SigV4 allows a signature for 15
minutes), so no signing happens while measuring and the client's work per request is the same
on both sides. They are 256 different signatures, as a client sending different bodies makes:
the server keeps nothing per signature, and the rotation keeps the measurement honest should
that ever change. Any refused or failed request fails the scenario.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import statistics
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bench.checks import WrongAnswer, expect_ok
from bench.context import Context
from bench.cpus import set_tree_affinity
from bench.loadgen import Latency, LoadToolError, require
from bench.payloads import json_body
from bench.polyhost_server import ECHO_IMAGE, HOSTNAME_HEADER, REGION, PolyhostServer
from bench.procs import LOADGEN_CPUS, pinned
from bench.report import Section

KEY = "auth"
TITLE = "9. Access control: SigV4 verification and policy decisions on the invocation path"
CONTENT_TYPE = "application/octet-stream"
ENDPOINT = "bench-auth"
HOSTNAME = "echo"
ACCESS_KEY = "AKIABENCHADMIN000001"
SECRET = "bench-secret-access-key-0123456789abcdef"
HOSTNAME_KEY = "sagemaker:TargetContainerHostname"
BODY_BYTES = 1024
DISTINCT_REQUESTS = 256
REPLAY_SCRIPT = Path(__file__).resolve().parent.parent / "wrk" / "replay.lua"


def principals(account: str = "123456789012") -> dict[str, object]:
    endpoint_arn = f"arn:aws:sagemaker:{REGION}:{account}:endpoint/{ENDPOINT}"
    return {
        "principals": [
            {
                "name": "bench",
                "access_key_id": ACCESS_KEY,
                "secret_access_key": SECRET,
                "policies": [
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": "sagemaker:*",
                                "Resource": "*",
                                "Condition": {
                                    "Null": {"sagemaker:TargetContainerHostname": "true"}
                                },
                            },
                            {
                                "Effect": "Allow",
                                "Action": "sagemaker:InvokeEndpoint",
                                "Resource": endpoint_arn,
                                "Condition": {"StringLike": {HOSTNAME_KEY: ["echo*"]}},
                            },
                        ],
                    }
                ],
            }
        ]
    }


def signed_headers(url: str, body: bytes) -> dict[str, str]:
    """The headers of one request signed by botocore, to be replayed by the load tools."""
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": CONTENT_TYPE, HOSTNAME_HEADER: HOSTNAME},
    )
    SigV4Auth(Credentials(ACCESS_KEY, SECRET), "sagemaker", REGION).add_auth(request)
    return {k: v for k, v in request.headers.items() if k.lower() != "content-type"}


def raw_requests(url: str, bodies: list[bytes], signed: bool) -> bytes:
    """The requests wrk sends, in replay.lua's file format: one per body, the same headers on
    both sides, plus a fresh botocore signature when `signed`."""
    parts = urlsplit(url)
    out = []
    for body in bodies:
        headers = {
            "Host": parts.netloc,
            "Content-Type": CONTENT_TYPE,
            "Content-Length": str(len(body)),
            HOSTNAME_HEADER: HOSTNAME,
        }
        if signed:
            headers.update(signed_headers(url, body))
        head = f"POST {parts.path} HTTP/1.1\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
        raw = head.encode("latin-1") + body
        out.append(b"%d\n" % len(raw) + raw)
    return b"".join(out)


def wrk_replay(url: str, requests_file: Path, connections: int, duration_s: float) -> Latency:
    """wrk with replay.lua: the prepared requests in turn; refuses a run with any error."""
    command = [
        require("wrk"), "-t", "1", "-c", str(connections),
        "-d", f"{max(1, math.ceil(duration_s))}s", "--timeout", "30s",
        "-s", str(REPLAY_SCRIPT), url, "--", str(requests_file),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            pinned(command, LOADGEN_CPUS), capture_output=True, timeout=duration_s + 120
        )
    except subprocess.TimeoutExpired:
        raise LoadToolError(f"wrk did not finish within {duration_s + 120:g} s") from None
    output = done.stdout.decode(errors="replace")
    line = next((x for x in output.splitlines() if x.startswith("BENCH-JSON ")), None)
    if done.returncode != 0 or line is None:
        raise LoadToolError(f"wrk failed on {url}: {done.stderr.decode(errors='replace')[-1500:]}")
    data = json.loads(line[len("BENCH-JSON ") :])
    errors = sum(int(v) for v in data["errors"].values())
    requests = int(data["requests"])
    if errors or requests == 0:
        raise WrongAnswer(f"wrk against {url}: {requests} requests, errors {data['errors']}")
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


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and its descendants."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def verify_cost(body: bytes, repeats: int) -> float:
    """Median seconds of one in-process verification of a request with `body`."""
    from polyhost.auth.principals import parse_principals
    from polyhost.auth.sigv4 import SigV4Verifier

    principal_set = parse_principals(json.dumps(principals()))
    verifier = SigV4Verifier(principal_set.lookup, region=REGION)
    url = f"http://127.0.0.1:1/endpoints/{ENDPOINT}/invocations"
    headers = signed_headers(url, body)
    headers["Content-Type"] = CONTENT_TYPE
    headers["Host"] = "127.0.0.1:1"
    pairs = [(k.encode(), v.encode()) for k, v in headers.items()]
    path = f"/endpoints/{ENDPOINT}/invocations"
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        verifier.verify("POST", path, "", pairs, services={"sagemaker"}, body=body)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def check_cost(body: bytes, repeats: int) -> float:
    """Median seconds of the whole check of one invocation as the runtime adapter makes it:
    `Gate.authenticate` then `Gate.authorize` (its decision cached after the first)."""
    from polyhost.auth.guard import AccessControl
    from polyhost.auth.principals import parse_principals
    from polyhost.http.auth import SAGEMAKER, Gate
    from polyhost.settings import Settings

    control = AccessControl.from_principals(
        parse_principals(json.dumps(principals())), region=REGION
    )
    gate = Gate(Settings(region=REGION), control)
    url = f"http://127.0.0.1:1/endpoints/{ENDPOINT}/invocations"
    headers = {"Host": "127.0.0.1:1", "Content-Type": CONTENT_TYPE, **signed_headers(url, body)}
    pairs = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    path = f"/endpoints/{ENDPOINT}/invocations".encode()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        principal = gate.authenticate("POST", path, b"", pairs, body, SAGEMAKER)
        gate.authorize(
            principal,
            gate.invocation_target(ENDPOINT),
            source_ip="127.0.0.1",
            target_container_hostname=HOSTNAME,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def hash_cost(body: bytes, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        hashlib.sha256(body).hexdigest()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    seconds = 1.0 if ctx.quick else 5.0
    bodies = [json_body(BODY_BYTES, seed=i) for i in range(DISTINCT_REQUESTS)]
    big = os.urandom(5 * 1024 * 1024)
    auth_file = work / "principals.json"
    auth_file.write_text(json.dumps(principals()), encoding="utf-8")

    servers = {
        "off": PolyhostServer(work / "off"),
        "on": PolyhostServer(
            work / "on",
            extra_args=["--auth-file", str(auth_file)],
            credentials=(ACCESS_KEY, SECRET),
        ),
    }
    results: dict[str, dict[str, Latency]] = {"off": {}, "on": {}}
    # CPU seconds per request of the serving side (server and container) at c=32: what decides
    # throughput on its one core, and much less disturbed than throughput by other work on a
    # shared machine.
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for name, server in servers.items():
            server.start()
            server.deploy(
                ENDPOINT, [{"Image": ECHO_IMAGE, "ContainerHostname": HOSTNAME}], mode="Direct"
            )
            url = server.invocations_url(ENDPOINT)
            headers = signed_headers(url, bodies[0]) if name == "on" else {}
            headers[HOSTNAME_HEADER] = HOSTNAME
            expect_ok(url, bodies[0], CONTENT_TYPE, headers, same_body=True)
            assert server.service is not None
            set_tree_affinity(server.service.pid, [1])
        for round_ in range(1 if ctx.quick else 2):
            for name, server in servers.items():
                url = server.invocations_url(ENDPOINT)
                # Signed now, so every signature is minutes inside its 15-minute window.
                requests_file = work / f"requests-{name}.txt"
                requests_file.write_bytes(raw_requests(url, bodies, signed=name == "on"))
                assert server.service is not None
                c1 = wrk_replay(url, requests_file, connections=1, duration_s=seconds)
                before = tree_cpu_s(server.service.pid)
                c32 = wrk_replay(url, requests_file, connections=32, duration_s=seconds)
                cpu[name].append((tree_cpu_s(server.service.pid) - before) / c32.requests)
                results[name][f"c1-{round_}"] = c1
                results[name][f"c32-{round_}"] = c32
        big_url = servers["on"].invocations_url(ENDPOINT)
        big_headers = {**signed_headers(big_url, big), HOSTNAME_HEADER: HOSTNAME}
        end_to_end = []
        for name in ("off", "on"):
            url = servers[name].invocations_url(ENDPOINT)
            hdrs = big_headers if name == "on" else {HOSTNAME_HEADER: HOSTNAME}
            times = []
            for _ in range(3 if ctx.quick else 10):
                started = time.perf_counter()
                expect_ok(url, big, CONTENT_TYPE, hdrs, same_body=False)
                times.append(time.perf_counter() - started)
            end_to_end.append(statistics.median(times))
    finally:
        for server in servers.values():
            server.stop()

    def best(name: str, kind: str, pick: str) -> float:
        runs = [v for k, v in results[name].items() if k.startswith(kind)]
        return (
            min(getattr(r, pick) for r in runs)
            if pick.endswith("ms")
            else max(getattr(r, pick) for r in runs)
        )

    p50_off, p50_on = best("off", "c1", "p50_ms"), best("on", "c1", "p50_ms")
    rps_off, rps_on = best("off", "c32", "rps"), best("on", "c32", "rps")
    section.add(
        "Best of the alternated rounds for each side (the machine is shared: the best run is "
        "the least disturbed one).",
        "",
    )
    section.table(
        ["measure", "auth off", "auth on", "difference"],
        [
            ["1 KB c=1 p50 (ms)", p50_off, p50_on, f"{(p50_on - p50_off) * 1000:+.0f} µs"],
            ["1 KB c=32 throughput (req/s)", rps_off, rps_on, f"{rps_on / rps_off:.0%}"],
            ["1 KB c=32 CPU per request, server + container (µs)",
             f"{min(cpu['off']) * 1e6:.0f}", f"{min(cpu['on']) * 1e6:.0f}",
             f"{(min(cpu['on']) - min(cpu['off'])) * 1e6:+.0f} µs "
             f"(throughput {min(cpu['off']) / min(cpu['on']):.0%} at equal CPU)"],
            ["5 MB body, end to end (ms)", end_to_end[0] * 1000, end_to_end[1] * 1000,
             f"{(end_to_end[1] - end_to_end[0]) * 1000:+.1f} ms"],
        ],
    )  # fmt: skip
    repeats = 5 if ctx.quick else 20
    verify_5mb = verify_cost(big, repeats)
    sha_5mb = hash_cost(big, repeats)
    verify_1kb = verify_cost(bodies[0], repeats * 20)
    check_1kb = check_cost(bodies[0], repeats * 20)
    section.table(
        ["in process", "median"],
        [
            ["SigV4Verifier.verify, 1 KB body", f"{verify_1kb * 1e6:.0f} µs"],
            [
                "Gate.authenticate + Gate.authorize (decision cached), 1 KB",
                f"{check_1kb * 1e6:.0f} µs",
            ],
            ["SigV4Verifier.verify, 5 MB body", f"{verify_5mb * 1000:.2f} ms"],
            ["of which sha256 of 5 MB", f"{sha_5mb * 1000:.2f} ms"],
        ],
    )
    section.target(
        "p50 added by auth, 1 KB at c=1",
        f"{(p50_on - p50_off) * 1000:.0f} µs",
        "≤ 100 µs",
        (p50_on - p50_off) <= 0.1,
    )
    section.target(
        "c=32 throughput with auth, share of without",
        f"{rps_on / rps_off:.0%}",
        "≥ 90%",
        rps_on / rps_off >= 0.9,
    )
    raw: dict[str, object] = {n: {k: vars(v) for k, v in r.items()} for n, r in results.items()}
    raw["cpu_per_request_s"] = cpu
    ctx.save_raw(KEY, raw)
    return section
