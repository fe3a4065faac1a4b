"""The metric history survives a restart: SIGTERM, start again on the same state dir, and the
same datapoints come back (from the roll-ups on disk now, from memory before)."""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.metrics.history_server import HistoryServerProcess, write_images
from tests.support.endpoints import deploy, echo_container, invoke

DIMS = [
    {"Name": "EndpointName", "Value": "kept"},
    {"Name": "VariantName", "Value": "AllTraffic"},
    {"Name": "ContainerName", "Value": "model"},
]


def read(server: HistoryServerProcess, start: datetime) -> list[dict[str, Any]]:
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


def test_history_survives_a_restart(tmp_path: Path) -> None:
    server = HistoryServerProcess(
        state_dir=tmp_path / "state", image_config=write_images(tmp_path / "images.toml")
    ).start()
    try:
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
        deploy(server.sagemaker(), "kept", [echo_container("model")])
        runtime = server.runtime()
        for _ in range(7):
            invoke(runtime, "kept", b"x")
        deadline = time.monotonic() + 60
        while True:
            before = read(server, start)
            if sum(p.get("Sum", 0) for p in before) == 7:
                break
            assert time.monotonic() < deadline, f"the 7 invocations never showed: {before}"
            time.sleep(0.5)
        assert server.stop(signal.SIGTERM) == 0
        server.start()
        after = read(server, start)
        assert after == before
        listed = server.cloudwatch().list_metrics(
            Dimensions=[{"Name": "EndpointName", "Value": "kept"}]
        )
        assert {m["MetricName"] for m in listed["Metrics"]} >= {"Invocations", "ContainerLatency"}
    finally:
        server.stop()
