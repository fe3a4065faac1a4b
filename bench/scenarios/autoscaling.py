"""Scenario 20: autoscaling: a step load against a 1-instance variant with target tracking.

One endpoint of the echo container with a fixed service time (ECHO_SERVICE_MS: each instance
answers at most 1000/ECHO_SERVICE_MS requests a second), a scalable target on its variant
(MinCapacity 1, MaxCapacity 4) and a target tracking policy on
SageMakerVariantInvocationsPerInstance, all through boto3's `application-autoscaling` client.
The server runs in accelerated time (`--autoscaling-time-scale 6`: an evaluated minute lasts
10 seconds), so the policy's three-minute scale-out alarm is judged on 30 seconds and the
fifteen-minute scale-in one on 150.

The load is an open loop (requests on a fixed schedule whatever the answers, latency from the
planned send) in windows of WINDOW_S seconds: a low rate, then a step to a rate one instance
can barely carry, then the low rate again. Between windows DescribeEndpoint's
CurrentInstanceCount is read. Reported: every window (time, rates, p50/p99, instances), the
time from the step to the first window served by more than one instance, p99 before, during
(from the step until capacity was added) and after (the rest of the step), the scaling
activities as DescribeScalingActivities lists them, and a plot.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import boto3
from botocore.config import Config

from bench import plots
from bench.context import Context
from bench.loadgen import open_loop
from bench.payloads import SIZES, write_bodies
from bench.polyhost_server import ECHO_IMAGE, REGION, PolyhostServer
from bench.report import Section

KEY = "autoscaling"
TITLE = "20. Autoscaling: a step load against a 1-instance variant with target tracking"
CONTENT_TYPE = "application/json"
ENDPOINT = "bench-scale"
RESOURCE = f"endpoint/{ENDPOINT}/variant/AllTraffic"
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
TIME_SCALE = 6
SERVICE_MS = 5  # one instance: at most 200 requests a second
LOW_RPS = 30.0
STEP_RPS = 170.0
# Invocations per instance per evaluated minute (10 s here): 60 requests a second an instance,
# so the step asks for ceil(170 / 60) = 3 instances.
TARGET_PER_MINUTE = 600.0
WINDOW_S = 2.0


@dataclass(frozen=True)
class Window:
    at_s: float  # since the load began, at the window's start
    phase: str  # before, step, after
    offered_rps: float
    achieved_rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    instances: int  # CurrentInstanceCount read after the window


def _autoscaling(server: PolyhostServer) -> Any:
    return boto3.client(
        "application-autoscaling",
        endpoint_url=server.url,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}),
    )


def _instances(sagemaker: Any) -> int:
    variants = sagemaker.describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"]
    return int(variants[0].get("CurrentInstanceCount", 0))


def _policy(server: PolyhostServer) -> Any:
    scaling = _autoscaling(server)
    scaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=RESOURCE,
        ScalableDimension=DIMENSION,
        MinCapacity=1,
        MaxCapacity=4,
    )
    scaling.put_scaling_policy(
        PolicyName="invocations-per-instance",
        ServiceNamespace="sagemaker",
        ResourceId=RESOURCE,
        ScalableDimension=DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": TARGET_PER_MINUTE,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            "ScaleOutCooldown": 60,
            "ScaleInCooldown": 60,
        },
    )
    return scaling


def _load(ctx: Context, server: PolyhostServer, body: Any) -> list[Window]:
    sagemaker = server.sagemaker()
    url = server.invocations_url(ENDPOINT)
    before_s, step_s, after_s = (4.0, 16.0, 4.0) if ctx.quick else (30.0, 120.0, 330.0)
    phases = [
        ("before", LOW_RPS, before_s),
        ("step", STEP_RPS, step_s),
        ("after", LOW_RPS, after_s),
    ]
    windows: list[Window] = []
    began = time.monotonic()
    for phase, rate, length in phases:
        ends = time.monotonic() + length
        while time.monotonic() < ends:
            at = time.monotonic() - began
            result = open_loop(url, body, CONTENT_TYPE, rate, WINDOW_S, max_connections=512)
            windows.append(
                Window(
                    at_s=at,
                    phase=phase,
                    offered_rps=rate,
                    achieved_rps=result.achieved_rps,
                    p50_ms=result.p50_ms,
                    p99_ms=result.p99_ms,
                    errors=result.errors,
                    instances=_instances(sagemaker),
                )
            )
        print(f"  {KEY}: {phase} done ({windows[-1].instances} instances)", flush=True)
    return windows


def _activities(scaling: Any) -> list[dict[str, Any]]:
    found = scaling.describe_scaling_activities(ServiceNamespace="sagemaker", ResourceId=RESOURCE)
    activities: list[dict[str, Any]] = found["ScalingActivities"]
    return activities


def run(ctx: Context) -> Section:
    section = ctx.begin(KEY, TITLE)
    work = ctx.work(KEY)
    body = write_bodies(work / "bodies", {"1KB": SIZES["1KB"]})["1KB"]
    extra = [
        "--autoscaling-time-scale", str(TIME_SCALE), "--alarm-evaluation-interval", "1",
    ]  # fmt: skip
    with PolyhostServer(work / "polyhost", extra_args=extra) as server:
        server.deploy(
            ENDPOINT,
            [{"Image": ECHO_IMAGE, "Environment": {"ECHO_SERVICE_MS": str(SERVICE_MS)}}],
        )
        scaling = _policy(server)
        windows = _load(ctx, server, body)
        activities = _activities(scaling)

    step = [w for w in windows if w.phase == "step"]
    step_at = step[0].at_s
    scaled = next((w for w in step if w.instances > 1), None)
    before = [w.p99_ms for w in windows if w.phase == "before"]
    during = [w.p99_ms for w in step if scaled is None or w.at_s < scaled.at_s]
    after = [w.p99_ms for w in step if scaled is not None and w.at_s >= scaled.at_s]
    section.add(
        f"One endpoint of the echo container holding each request {SERVICE_MS} ms (one "
        f"instance: at most {1000 // SERVICE_MS} req/s), target tracking on "
        f"SageMakerVariantInvocationsPerInstance at {TARGET_PER_MINUTE:g} per evaluated minute, "
        f"MinCapacity 1, MaxCapacity 4, cooldowns 60 s; `--autoscaling-time-scale {TIME_SCALE}` "
        f"(an evaluated minute lasts {60 // TIME_SCALE} s). Open-loop load in {WINDOW_S:g} s "
        f"windows: {LOW_RPS:g} req/s, a step to {STEP_RPS:g} req/s, then {LOW_RPS:g} req/s.",
        "",
    )
    section.table(
        ["t s", "phase", "offered req/s", "achieved req/s", "p50 ms", "p99 ms", "errors",
         "instances"],
        [
            [f"{w.at_s:.0f}", w.phase, f"{w.offered_rps:g}", f"{w.achieved_rps:.0f}",
             f"{w.p50_ms:.1f}", f"{w.p99_ms:.1f}", w.errors, w.instances]
            for w in windows
        ],
    )  # fmt: skip
    section.add("", "Scaling activities, newest first:", "")
    section.table(
        ["start", "status", "description", "cause"],
        [
            [str(a.get("StartTime", ""))[:19], a.get("StatusCode", ""),
             a.get("Description", ""), str(a.get("Cause", ""))[:120]]
            for a in activities
        ],
    )  # fmt: skip
    section.add("")
    plot = ctx.plot(section, "autoscaling", "capacity and latency through the step")
    fig, (capacity, latency) = plots.figure(2)
    xs = [w.at_s for w in windows]
    plots.lines(capacity, "seconds", "instances", "CurrentInstanceCount",
                {"instances": (xs, [float(w.instances) for w in windows])})  # fmt: skip
    plots.lines(latency, "seconds", "ms", "open-loop latency per window",
                {"p50": (xs, [w.p50_ms for w in windows]),
                 "p99": (xs, [w.p99_ms for w in windows])}, log_y=True)  # fmt: skip
    plots.save(fig, plot, TITLE)
    reaction = None if scaled is None else scaled.at_s - step_at
    section.target(
        "capacity added while the step lasts (from the step to a window served by 2+ instances)",
        "never" if reaction is None else f"{reaction:.0f} s",
        f"within the step ({step[-1].at_s + WINDOW_S - step_at:.0f} s)",
        reaction is not None,
    )
    if before and after:
        section.target(
            "p99 once capacity was added, against p99 before the step (median of windows)",
            f"{statistics.median(after):.1f} ms against {statistics.median(before):.1f} ms "
            f"(during: {statistics.median(during):.1f} ms)" if during else
            f"{statistics.median(after):.1f} ms against {statistics.median(before):.1f} ms",
            "at most twice before",
            statistics.median(after) <= 2 * statistics.median(before),
        )  # fmt: skip
    if not ctx.quick:
        last = windows[-1].instances
        section.target(
            "scaled back in after the step", f"{last} instances at the end", "1", last == 1
        )
    ctx.save_raw(
        KEY,
        {"windows": [asdict(w) for w in windows], "activities": len(activities)},
    )
    return section
