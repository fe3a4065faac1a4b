"""Scenario 9: what access control costs an invocation (SigV4 check + cached policy decision).

Two polyhost servers in the same run, the same light echo container behind each: one started
without `--auth-file`, one with a principals file whose policy allows InvokeEndpoint only for
the container named in `sagemaker:TargetContainerHostname`, so every request is verified and
goes through a (cached) policy decision. The serving side is pinned to CPU 1, wrk to CPU 0.

Three kinds of load, measured in every round, in an order that turns from round to round:

- "on": signed requests to the server with auth;
- "off": the same signed requests to the server without auth. This is the baseline the targets
  use: boto3, the AWS CLI and the SageMaker SDK sign every request whether or not the server
  checks it, so turning auth on changes nothing on the wire, only the server's work;
- "off, unsigned": the same requests without their signature headers (what curl would send),
  to the server without auth, shown for comparison.

Each gets 1 KB at concurrency 1 (p50) and 1 KB at concurrency 32 (throughput, and CPU per
request of server + container). The machine is shared and one run can be disturbed: the
targets use the median over the rounds, of p50 and of each round's throughput ratio, and every
round is listed. Also the payload hash of a 5 MB body: `SigV4Verifier.verify` in process, and
end to end.

The comparison is like for like. All kinds send the same 256 different 1 KB bodies in turn,
through the same wrk script (`wrk/replay.lua`), over the same keep-alive connections. The
signed requests are prepared by botocore just before each run (SigV4 allows a signature for 15
minutes), so no signing happens while measuring and the client's work per request is the same
for every kind. They are 256 different signatures, as a client sending different bodies makes:
the server keeps nothing per signature, and the rotation keeps the measurement honest should
that ever change. Any refused or failed request fails the scenario.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import statistics
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
from bench.loadgen import Latency, wrk_script_run
from bench.payloads import json_body
from bench.polyhost_server import ECHO_IMAGE, HOSTNAME_HEADER, REGION, PolyhostServer
from bench.procs import LOADGEN_CPUS
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
    result = wrk_script_run(
        url, REPLAY_SCRIPT, [str(requests_file)], connections, duration_s, LOADGEN_CPUS
    )
    if result.errors:
        raise WrongAnswer(f"wrk against {url}: {result.errors} of {result.requests} failed")
    return result


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
    verifier = SigV4Verifier(principal_set.lookup, region=REGION, compiled=True)
    url = f"http://127.0.0.1:1/endpoints/{ENDPOINT}/invocations"
    headers = signed_headers(url, body)
    headers["Content-Type"] = CONTENT_TYPE
    headers["Host"] = "127.0.0.1:1"
    pairs = [(k.lower().encode(), v.encode()) for k, v in headers.items()]  # as received
    path = f"/endpoints/{ENDPOINT}/invocations".encode()
    services = frozenset({"sagemaker"})
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        verifier.verify("POST", path, b"", pairs, services=services, body=body)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def check_cost(body: bytes, repeats: int) -> float:
    """Median seconds of the whole check of one invocation as the runtime adapter makes it
    (`Gate.allow_invocation`: the compiled acceptor, the remembered allowance)."""
    from polyhost.auth.gate import Gate
    from polyhost.auth.guard import AccessControl
    from polyhost.auth.principals import parse_principals
    from polyhost.settings import Settings

    control = AccessControl.from_principals(
        parse_principals(json.dumps(principals())), region=REGION
    )
    gate = Gate(Settings(region=REGION), control)
    url = f"http://127.0.0.1:1/endpoints/{ENDPOINT}/invocations"
    headers = {"Host": "127.0.0.1:1", "Content-Type": CONTENT_TYPE, **signed_headers(url, body)}
    pairs = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    path = f"/endpoints/{ENDPOINT}/invocations".encode()
    allow = gate.allow_invocation
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        allow(path, pairs, body, ENDPOINT, "127.0.0.1", HOSTNAME, None, None)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def hash_cost(body: bytes, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        hashlib.sha256(body).hexdigest()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


KINDS = ("off, unsigned", "off", "on")


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    seconds_c1, seconds_c32 = (1.0, 1.0) if ctx.quick else (2.0, 3.0)
    rounds = 1 if ctx.quick else 6
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
    server_of = {"off, unsigned": "off", "off": "off", "on": "on"}
    # Per kind, one entry per round: the c=1 and c=32 runs, and the CPU seconds per request of
    # the serving side (server and container) at c=32, what decides throughput on its core.
    c1: dict[str, list[Latency]] = {kind: [] for kind in KINDS}
    c32: dict[str, list[Latency]] = {kind: [] for kind in KINDS}
    cpu: dict[str, list[float]] = {kind: [] for kind in KINDS}
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
        for round_ in range(rounds):
            order = KINDS[round_ % 3 :] + KINDS[: round_ % 3]
            for kind in order:
                server = servers[server_of[kind]]
                url = server.invocations_url(ENDPOINT)
                # Signed now, so every signature is minutes inside its 15-minute window.
                requests_file = work / f"requests-{kind.replace(', ', '-')}.txt"
                requests_file.write_bytes(raw_requests(url, bodies, signed=kind != "off, unsigned"))
                assert server.service is not None
                c1[kind].append(wrk_replay(url, requests_file, 1, seconds_c1))
                before = tree_cpu_s(server.service.pid)
                result = wrk_replay(url, requests_file, 32, seconds_c32)
                cpu[kind].append((tree_cpu_s(server.service.pid) - before) / result.requests)
                c32[kind].append(result)
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

    def median(values: list[float]) -> float:
        return statistics.median(values)

    p50 = {kind: median([r.p50_ms for r in c1[kind]]) for kind in KINDS}
    rps = {kind: median([r.rps for r in c32[kind]]) for kind in KINDS}
    per_request = {kind: median(cpu[kind]) for kind in KINDS}
    # Each round's ratio compares runs minutes apart at most; the median of them is the result.
    ratio = median([on.rps / off.rps for on, off in zip(c32["on"], c32["off"], strict=True)])
    ratio_unsigned = median(
        [on.rps / off.rps for on, off in zip(c32["on"], c32["off, unsigned"], strict=True)]
    )
    section.add(
        f"Medians over {rounds} round(s); in each, every kind of load ran once, in an order "
        'that turns from round to round. "off" gets the same signed requests as "on" (the '
        'baseline of the targets); "off, unsigned" the same requests without their signature '
        "headers.",
        "",
    )
    section.table(
        ["measure", "off, unsigned", "off", "on", "on vs off"],
        [
            ["1 KB c=1 p50 (ms)", p50["off, unsigned"], p50["off"], p50["on"],
             f"{(p50['on'] - p50['off']) * 1000:+.0f} µs"],
            ["1 KB c=32 throughput (req/s)", rps["off, unsigned"], rps["off"], rps["on"],
             f"{ratio:.0%} (median of the rounds' ratios; {ratio_unsigned:.0%} of unsigned)"],
            ["1 KB c=32 CPU per request, server + container (µs)",
             f"{per_request['off, unsigned'] * 1e6:.0f}", f"{per_request['off'] * 1e6:.0f}",
             f"{per_request['on'] * 1e6:.0f}",
             f"{(per_request['on'] - per_request['off']) * 1e6:+.0f} µs"],
            ["5 MB body, end to end (ms)", "", end_to_end[0] * 1000, end_to_end[1] * 1000,
             f"{(end_to_end[1] - end_to_end[0]) * 1000:+.1f} ms"],
        ],
    )  # fmt: skip
    section.add("Every round (c=32 req/s, and CPU µs per request of server + container):", "")
    section.table(
        ["round", "off, unsigned", "off", "on", "on / off", "on / off, unsigned"],
        [
            [
                str(i + 1),
                *(f"{c32[kind][i].rps:,.0f} ({cpu[kind][i] * 1e6:.0f} µs)" for kind in KINDS),
                f"{c32['on'][i].rps / c32['off'][i].rps:.0%}",
                f"{c32['on'][i].rps / c32['off, unsigned'][i].rps:.0%}",
            ]
            for i in range(rounds)
        ],
    )
    repeats = 5 if ctx.quick else 20
    verify_5mb = verify_cost(big, repeats)
    sha_5mb = hash_cost(big, repeats)
    verify_1kb = verify_cost(bodies[0], repeats * 20)
    check_1kb = check_cost(bodies[0], repeats * 20)
    section.table(
        ["in process", "median"],
        [
            ["SigV4Verifier.verify, 1 KB body", f"{verify_1kb * 1e6:.1f} µs"],
            [
                "the whole check of an invocation, as the runtime adapter makes it, 1 KB",
                f"{check_1kb * 1e6:.1f} µs",
            ],
            ["SigV4Verifier.verify, 5 MB body", f"{verify_5mb * 1000:.2f} ms"],
            ["of which sha256 of 5 MB", f"{sha_5mb * 1000:.2f} ms"],
        ],
    )
    section.target(
        "p50 added by auth, 1 KB at c=1",
        f"{(p50['on'] - p50['off']) * 1000:.0f} µs",
        "≤ 100 µs",
        (p50["on"] - p50["off"]) <= 0.1,
    )
    section.target(
        "c=32 throughput with auth, share of without",
        f"{ratio:.0%}",
        "≥ 90%",
        ratio >= 0.9,
    )
    raw: dict[str, object] = {
        "c1": {kind: [vars(r) for r in runs] for kind, runs in c1.items()},
        "c32": {kind: [vars(r) for r in runs] for kind, runs in c32.items()},
        "cpu_per_request_s": cpu,
    }
    ctx.save_raw(KEY, raw)
    return section
