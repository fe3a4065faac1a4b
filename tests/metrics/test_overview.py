"""The per-container overview: live samples plus the history's last minute, one row per replica.

The history is a real `MetricsHistory` filled by a real `MetricsRecorder` from real counters,
bumped as the router bumps them; only the clock is chosen.
"""

from __future__ import annotations

import pytest

from polyhost.metrics.collection import ResourceUsage
from polyhost.metrics.history import MetricsHistory
from polyhost.metrics.overview import WINDOW_S, container_overviews
from polyhost.metrics.recorder import MetricsRecorder
from polyhost.metrics.series import ContainerCounters
from tests.metrics.test_recorder import call, sample

T0 = 1_700_000_040  # on a minute


def test_rows_per_replica_with_rates_errors_and_percentiles() -> None:
    history = MetricsHistory(clock=lambda: T0)
    first, second, other = ContainerCounters(), ContainerCounters(), ContainerCounters()
    usage = ResourceUsage(cpu_percent=42.0, memory_percent=1.5, rss_bytes=30_000_000)
    samples = [
        sample("a", first, instance="i-0", usage=usage),
        sample("a", second, instance="i-1", restarts=2, up=False),
        sample("b", other, variant="Canary"),
    ]
    recorder = MetricsRecorder(history, lambda: samples, clock=lambda: T0)
    for step in range(6):  # one minute of 10 s intervals
        for latency in (1_000, 2_000, 3_000, 4_000, 100_000):
            call(first, latency)
        call(second, 5_000, status=500 if step % 2 else 200)
        recorder.tick(T0 + 10 * step)
    rows = container_overviews(samples, history, now=T0 + 60 + 3)
    assert [(r.hostname, r.variant, r.instance) for r in rows] == [
        ("a", "AllTraffic", "i-0"), ("a", "AllTraffic", "i-1"), ("b", "Canary", "i-0"),
    ]  # fmt: skip
    busy, failing, idle = rows
    assert busy.window_s is not None and busy.window_s >= WINDOW_S
    assert busy.requests_per_s == pytest.approx(30 / busy.window_s)
    assert busy.error_rate == 0.0
    assert busy.p50_ms == pytest.approx(3.0, rel=0.02)
    assert busy.p99_ms == pytest.approx(100.0, rel=0.02)
    assert (busy.cpu_percent, busy.memory_percent, busy.rss_bytes) == (42.0, 1.5, 30_000_000)
    assert busy.status == "up"
    assert failing.requests_per_s == pytest.approx(6 / failing.window_s)  # type: ignore[operator]
    assert failing.error_rate == pytest.approx(0.5)
    assert (failing.status, failing.restarts, failing.cpu_percent) == ("down", 2, None)
    assert (idle.requests_per_s, idle.error_rate, idle.p99_ms) == (0.0, None, None)


def test_without_history_the_rows_still_list_every_container() -> None:
    rows = container_overviews([sample("a", ContainerCounters())], None, now=T0)
    assert [(r.hostname, r.requests_per_s, r.p50_ms, r.up) for r in rows] == [
        ("a", None, None, True)
    ]
