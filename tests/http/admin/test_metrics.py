"""`GET /metrics` on the admin listener: per-container series after real traffic, parsed as
Prometheus does; the main port no longer serves it."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.support.endpoints import deploy, echo_container, invoke
from tests.support.server import PolyhostProcess


def scrape(server: PolyhostProcess) -> dict[tuple[str, str], float]:
    """{(sample name, container_name): value} of the polyhost_* samples."""
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("endpoint_name") != "observed" or "le" in sample.labels:
                continue
            samples[(sample.name, sample.labels["container_name"])] = sample.value
    return samples


def test_each_container_has_its_own_series(server: PolyhostProcess, sagemaker: Any) -> None:
    runtime = server.runtime()
    deploy(sagemaker, "observed", [echo_container("a"), echo_container("b")], mode="Direct")
    for _ in range(5):
        invoke(runtime, "observed", b"x", TargetContainerHostname="a")
    invoke(runtime, "observed", b"x", TargetContainerHostname="b")
    for status in ("404", "500"):
        with pytest.raises(ClientError):
            invoke(
                runtime, "observed", b"x", TargetContainerHostname="b",
                CustomAttributes=f"status={status}",
            )  # fmt: skip
    samples = scrape(server)
    assert samples[("polyhost_invocations_total", "a")] == 5
    assert samples[("polyhost_invocations_total", "b")] == 3
    assert samples[("polyhost_invocation_4xx_errors_total", "b")] == 1
    assert samples[("polyhost_invocation_5xx_errors_total", "b")] == 1
    assert samples[("polyhost_invocation_4xx_errors_total", "a")] == 0
    assert samples[("polyhost_container_latency_microseconds_count", "a")] == 5
    assert samples[("polyhost_container_latency_microseconds_sum", "a")] > 0
    assert samples[("polyhost_overhead_latency_microseconds_count", "a")] == 5
    assert samples[("polyhost_container_up", "a")] == 1
    assert samples[("polyhost_container_memory_rss_bytes", "a")] > 1_000_000
    assert ("polyhost_container_cpu_utilization_percent", "b") in samples


def test_the_main_port_does_not_serve_metrics(server: PolyhostProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as excinfo:
        urllib.request.urlopen(server.url + "/metrics", timeout=10)
    assert excinfo.value.code == 404
