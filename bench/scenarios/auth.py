"""Scenario 9: what access control costs an invocation (SigV4 check + cached policy decision).

Two polyhost servers in the same run, the same light echo container behind each: one started
without `--auth-file`, one with a principals file whose policy allows InvokeEndpoint only for
the container named in `sagemaker:TargetContainerHostname`, so every request is verified and
goes through a (cached) policy decision. The load tools replay one request signed by botocore:
SigV4 has no nonce, so a signature stays valid for its 15 minutes, exactly as a replaying
client's would. Measured alternately, the serving side pinned to CPU 1 and wrk to CPU 0:

- 1 KB at concurrency 1 (wrk, one connection): p50 with auth on and off;
- 1 KB at concurrency 32 (wrk): throughput with auth on as a share of auth off;
- the payload hash of a 5 MB body: `SigV4Verifier.verify` in process, and end to end.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bench.checks import expect_ok
from bench.context import Context
from bench.cpus import set_tree_affinity
from bench.loadgen import Latency, wrk_run
from bench.payloads import SIZES, write_bodies
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
    bodies = write_bodies(work / "bodies", {k: v for k, v in SIZES.items() if k in ("1KB",)})
    big = os.urandom(5 * 1024 * 1024)
    (work / "bodies").mkdir(parents=True, exist_ok=True)
    big_file = work / "bodies" / "5MB.bin"
    big_file.write_bytes(big)
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
    try:
        for server in servers.values():
            server.start()
            server.deploy(
                ENDPOINT, [{"Image": ECHO_IMAGE, "ContainerHostname": HOSTNAME}], mode="Direct"
            )
        headers: dict[str, dict[str, str]] = {}
        for name, server in servers.items():
            url = server.invocations_url(ENDPOINT)
            if name == "on":
                headers[name] = signed_headers(url, bodies["1KB"].read_bytes())
            else:
                headers[name] = {HOSTNAME_HEADER: HOSTNAME}
            expect_ok(url, bodies["1KB"].read_bytes(), CONTENT_TYPE, headers[name], same_body=True)
            assert server.service is not None
            set_tree_affinity(server.service.pid, [1])
        for round_ in range(1 if ctx.quick else 2):
            for name, server in servers.items():
                url = server.invocations_url(ENDPOINT)
                c1 = wrk_run(url, bodies["1KB"], CONTENT_TYPE, headers[name], connections=1,
                             duration_s=seconds, cpus=LOADGEN_CPUS)  # fmt: skip
                c32 = wrk_run(url, bodies["1KB"], CONTENT_TYPE, headers[name], connections=32,
                              duration_s=seconds, cpus=LOADGEN_CPUS)  # fmt: skip
                results[name][f"c1-{round_}"] = c1
                results[name][f"c32-{round_}"] = c32
        big_url = servers["on"].invocations_url(ENDPOINT)
        big_headers = signed_headers(big_url, big)
        end_to_end = []
        for name in ("off", "on"):
            url = servers[name].invocations_url(ENDPOINT)
            hdrs = big_headers if name == "on" else headers["off"]
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
            ["5 MB body, end to end (ms)", end_to_end[0] * 1000, end_to_end[1] * 1000,
             f"{(end_to_end[1] - end_to_end[0]) * 1000:+.1f} ms"],
        ],
    )  # fmt: skip
    repeats = 5 if ctx.quick else 20
    verify_5mb = verify_cost(big, repeats)
    sha_5mb = hash_cost(big, repeats)
    verify_1kb = verify_cost(bodies["1KB"].read_bytes(), repeats * 20)
    section.table(
        ["in process", "median"],
        [
            ["SigV4Verifier.verify, 1 KB body", f"{verify_1kb * 1e6:.0f} µs"],
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
    ctx.save_raw(KEY, {n: {k: vars(v) for k, v in r.items()} for n, r in results.items()})
    return section
