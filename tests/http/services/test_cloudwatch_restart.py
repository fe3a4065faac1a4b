"""The metric history survives a restart: SIGTERM, start again on the same state dir, and the
same datapoints come back (from the roll-ups on disk now, from memory before)."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.endpoints import deploy, echo_container, invoke
from tests.support.server import PolyhostProcess, ServerFactory
from tests.support.waiting import eventually

DIMS = [
    {"Name": "EndpointName", "Value": "kept"},
    {"Name": "VariantName", "Value": "AllTraffic"},
    {"Name": "ContainerName", "Value": "model"},
]


def read(server: PolyhostProcess, start: datetime) -> list[dict[str, Any]]:
    cloudwatch = server.cloudwatch()
    common = {
        "Namespace": "AWS/SageMaker",
        "Dimensions": DIMS,
        "StartTime": start,
        "EndTime": start + timedelta(minutes=10),
        "Period": 60,
    }
    calls = cloudwatch.get_metric_statistics(
        MetricName="Invocations", Statistics=["Sum", "SampleCount"], **common
    )["Datapoints"]
    latency = cloudwatch.get_metric_statistics(
        MetricName="ContainerLatency", ExtendedStatistics=["p50", "p99"], **common
    )["Datapoints"]
    return [*calls, *latency]


def test_history_survives_a_restart(start_own_server: ServerFactory) -> None:
    server = start_own_server()
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
    deploy(server.sagemaker(), "kept", [echo_container("model")])
    runtime = server.runtime()
    for _ in range(7):
        invoke(runtime, "kept", b"x")
    before = eventually(
        lambda: read(server, start),
        "the 7 invocations to show",
        interval=0.5,
        until=lambda points: sum(p.get("Sum", 0) for p in points) == 7,
    )
    assert server.stop(signal.SIGTERM) == 0
    server.start()
    after = read(server, start)
    assert after == before
    listed = server.cloudwatch().list_metrics(
        Dimensions=[{"Name": "EndpointName", "Value": "kept"}]
    )
    assert {m["MetricName"] for m in listed["Metrics"]} >= {"Invocations", "ContainerLatency"}
