"""CPU and memory from Docker's stats answers (shapes as the daemon sends them, v1 and v2)."""

from __future__ import annotations

from typing import Any

from polyhost.backends.docker.stats import reading, stats_between


def sample(cpu_ns: int, system_ns: int, usage: int, cache_key: str, cache: int) -> dict[str, Any]:
    return {
        "cpu_stats": {
            "cpu_usage": {"total_usage": cpu_ns},
            "system_cpu_usage": system_ns,
            "online_cpus": 2,
        },
        "memory_stats": {"usage": usage, "limit": 1000, "stats": {cache_key: cache}},
    }


def test_cpu_is_percent_of_one_core_between_two_readings() -> None:
    first = reading(sample(1_000, 10_000, 600, "total_inactive_file", 100))
    second = reading(sample(6_000, 20_000, 600, "total_inactive_file", 100))
    assert first is not None and second is not None
    # 5000 ns of CPU while the 2 CPUs ran 10000 ns in all: one core, fully busy.
    stats = stats_between(first, second)
    assert stats.cpu_percent == 100.0
    assert stats.rss_bytes == 500  # usage less the reclaimable cache (cgroup v1)
    assert stats.memory_percent == 50.0
    assert stats_between(None, first).cpu_percent == 0.0


def test_cgroup_v2_cache_and_an_empty_answer() -> None:
    now = reading(sample(1, 1, 800, "inactive_file", 300))
    assert now is not None and now.memory_bytes == 500
    assert reading({"cpu_stats": {}, "memory_stats": {}}) is None  # a stopped container
