"""The Prometheus exposition of container samples, read back the way a scraper reads it.

Rendering goes through prometheus_client's `generate_latest` and is parsed back with its text
parser, so these tests see exactly what Prometheus would ingest: family names and types, the
four SageMaker-style labels, cumulative buckets with `+Inf` equal to the count, and resource
gauges only for containers whose usage could be read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from polyhost.metrics.collection import (
    LABELS,
    ContainerCollector,
    ContainerSample,
    ResourceUsage,
    container_registry,
)
from polyhost.metrics.series import LATENCY_BUCKETS_US, ContainerCounters, MultiModelCounters

FAMILIES = {
    "polyhost_invocations": "counter",
    "polyhost_invocation_4xx_errors": "counter",
    "polyhost_invocation_5xx_errors": "counter",
    "polyhost_container_latency_microseconds": "histogram",
    "polyhost_overhead_latency_microseconds": "histogram",
    "polyhost_invocation_streams": "counter",
    "polyhost_time_to_first_byte_microseconds": "histogram",
    "polyhost_container_cpu_utilization_percent": "gauge",
    "polyhost_container_memory_utilization_percent": "gauge",
    "polyhost_container_memory_rss_bytes": "gauge",
    "polyhost_container_up": "gauge",
    "polyhost_container_restarts": "counter",
    "polyhost_container_starts": "counter",
    "polyhost_model_setup_seconds": "gauge",
}


def sample(
    container: str = "model",
    *,
    counters: ContainerCounters | None = None,
    up: bool = True,
    restarts: int = 0,
    usage: ResourceUsage | None = None,
    instance: str = "i-0",
) -> ContainerSample:
    return ContainerSample(
        endpoint_name="ep",
        variant_name="AllTraffic",
        instance_id=instance,
        container_name=container,
        counters=counters or ContainerCounters(),
        up=up,
        restarts=restarts,
        usage=usage,
    )


def scrape(samples: Iterable[ContainerSample]) -> dict[str, tuple[str, list[Sample]]]:
    """Family name -> (type, samples), as Prometheus parses the exposition."""
    held = list(samples)
    text = generate_latest(container_registry(lambda: held)).decode()
    return {f.name: (f.type, list(f.samples)) for f in text_string_to_metric_families(text)}


def labels(container: str = "model", instance: str = "i-0") -> dict[str, str]:
    return {
        "endpoint_name": "ep",
        "variant_name": "AllTraffic",
        "instance_id": instance,
        "container_name": container,
    }


def value(
    scraped: dict[str, tuple[str, list[Sample]]], name: str, container: str = "model", **extra: str
) -> float:
    """The one sample of family `name` for `container` (and extra labels such as `le`).

    `le` is compared as a number: "1e+06" and "1000000.0" are the same bound to Prometheus.
    """
    wanted = {**labels(container), **extra}
    family = name.removesuffix("_total").removesuffix("_bucket").removesuffix("_sum")
    family = family.removesuffix("_count")

    def normal(found: dict[str, str]) -> dict[str, str | float]:
        return {k: float(v) if k == "le" else v for k, v in found.items()}

    matches = [
        s.value for s in scraped[family][1] if s.name == name and normal(s.labels) == normal(wanted)
    ]
    assert len(matches) == 1, (name, wanted, matches)
    return matches[0]


def test_every_family_is_exposed_with_its_type_even_with_no_container() -> None:
    scraped = scrape([])
    assert {name: kind for name, (kind, _) in scraped.items()} == FAMILIES
    assert all(samples == [] for _, samples in scraped.values())


def test_counters_and_state_of_a_container() -> None:
    counters = ContainerCounters(invocations=7, errors_4xx=2, errors_5xx=3)
    scraped = scrape([sample(counters=counters, up=False, restarts=4)])
    assert value(scraped, "polyhost_invocations_total") == 7
    assert value(scraped, "polyhost_invocation_4xx_errors_total") == 2
    assert value(scraped, "polyhost_invocation_5xx_errors_total") == 3
    assert value(scraped, "polyhost_container_up") == 0
    assert value(scraped, "polyhost_container_restarts_total") == 4


def test_the_last_start_and_its_setup_time() -> None:
    starting = ContainerSample(
        endpoint_name="ep",
        variant_name="AllTraffic",
        instance_id="i-0",
        container_name="model",
        counters=ContainerCounters(),
        up=True,
        restarts=2,
        usage=None,
        setups=((2, 1.25), (3, 0.5)),
    )
    scraped = scrape([starting, sample("never-started")])
    assert value(scraped, "polyhost_container_starts_total") == 3
    assert value(scraped, "polyhost_model_setup_seconds") == 0.5
    assert [s.labels["container_name"] for s in scraped["polyhost_model_setup_seconds"][1]] == [
        "model"
    ]


def test_every_sample_carries_the_four_labels() -> None:
    scraped = scrape([sample(usage=ResourceUsage(1.0, 2.0, 3))])
    for _, samples in scraped.values():
        for s in samples:
            assert {k: v for k, v in s.labels.items() if k != "le"} == labels()
    assert LABELS == ["endpoint_name", "variant_name", "instance_id", "container_name"]


def test_latency_buckets_are_cumulative_and_inf_is_the_count() -> None:
    counters = ContainerCounters()
    observed = [100.0, 100.5, 999.0, 1_000.0, 2_000_000.0, 90_000_000.0]
    for v in observed:
        counters.container_latency.observe(v)
    scraped = scrape([sample(counters=counters)])
    _, samples = scraped["polyhost_container_latency_microseconds"]
    buckets = {
        float(s.labels["le"]): s.value
        for s in samples
        if s.name.endswith("_bucket") and s.labels["container_name"] == "model"
    }
    assert sorted(buckets) == [*map(float, LATENCY_BUCKETS_US), math.inf]
    for bound, count in buckets.items():
        # `le` semantics: the bucket counts every observation at most its bound.
        assert count == sum(1 for v in observed if v <= bound), bound
    name = "polyhost_container_latency_microseconds"
    assert value(scraped, f"{name}_count") == len(observed)
    assert value(scraped, f"{name}_sum") == pytest.approx(sum(observed))
    assert value(scraped, f"{name}_bucket", le="+Inf") == len(observed)


def test_the_two_histograms_are_kept_apart() -> None:
    counters = ContainerCounters()
    counters.container_latency.observe(5_000)
    counters.overhead_latency.observe(80)
    counters.overhead_latency.observe(90)
    scraped = scrape([sample(counters=counters)])
    assert value(scraped, "polyhost_container_latency_microseconds_count") == 1
    assert value(scraped, "polyhost_overhead_latency_microseconds_count") == 2
    assert value(scraped, "polyhost_overhead_latency_microseconds_bucket", le="100") == 2
    assert value(scraped, "polyhost_container_latency_microseconds_bucket", le="2500") == 0


def test_resource_gauges_only_for_containers_whose_usage_was_read() -> None:
    scraped = scrape(
        [
            sample(
                "read", usage=ResourceUsage(cpu_percent=150.0, memory_percent=2.5, rss_bytes=4096)
            ),
            sample("unreadable", usage=None),
        ]
    )
    assert value(scraped, "polyhost_container_cpu_utilization_percent", "read") == 150.0
    assert value(scraped, "polyhost_container_memory_utilization_percent", "read") == 2.5
    assert value(scraped, "polyhost_container_memory_rss_bytes", "read") == 4096
    for family in (
        "polyhost_container_cpu_utilization_percent",
        "polyhost_container_memory_utilization_percent",
        "polyhost_container_memory_rss_bytes",
    ):
        assert [s.labels["container_name"] for s in scraped[family][1]] == ["read"]
    # The unreadable container is still counted and still says whether it is up.
    assert value(scraped, "polyhost_container_up", "unreadable") == 1
    assert value(scraped, "polyhost_invocations_total", "unreadable") == 0


def test_replicas_of_one_container_are_separate_series() -> None:
    first = ContainerCounters(invocations=1)
    second = ContainerCounters(invocations=5)
    scraped = scrape([sample(counters=first), sample(counters=second, instance="i-1")])
    by_instance = {s.labels["instance_id"]: s.value for s in scraped["polyhost_invocations"][1]}
    assert by_instance == {"i-0": 1, "i-1": 5}


def test_samples_are_read_at_each_scrape() -> None:
    """The collector holds a source, not a snapshot: counters moving between scrapes show."""
    counters = ContainerCounters()
    current = [sample(counters=counters)]
    registry = container_registry(lambda: current)
    counters.invocations = 1
    first = generate_latest(registry).decode()
    counters.invocations = 9
    current.append(sample("late"))
    second = generate_latest(registry).decode()

    def invocations(text: str) -> dict[str, float]:
        (family,) = [
            f for f in text_string_to_metric_families(text) if f.name == "polyhost_invocations"
        ]
        return {s.labels["container_name"]: s.value for s in family.samples}

    assert invocations(first) == {"model": 1}
    assert invocations(second) == {"model": 9, "late": 0}


def test_the_collector_yields_families_directly() -> None:
    """Usable in any registry: collect() alone gives the same families."""
    families = list(ContainerCollector(lambda: [sample()]).collect())
    assert [f.name for f in families] == list(FAMILIES)


def test_model_series_only_for_multi_model_containers() -> None:
    multi = MultiModelCounters(cache_hits=3, cache_misses=2, loaded=2)
    multi.loading.observe(5000.0)
    multi.loading.observe(7000.0)
    multi.unloading.observe(800.0)
    scraped = scrape([sample(counters=ContainerCounters(multi_model=multi)), sample("plain")])
    assert value(scraped, "polyhost_model_cache_hits_total") == 3
    assert value(scraped, "polyhost_model_cache_misses_total") == 2
    assert scraped["polyhost_loaded_models"][0] == "gauge"
    assert value(scraped, "polyhost_loaded_models") == 2
    assert value(scraped, "polyhost_model_loading_time_microseconds_count") == 2
    assert value(scraped, "polyhost_model_loading_time_microseconds_sum") == 12000
    assert value(scraped, "polyhost_model_unloading_time_microseconds_count") == 1
    assert value(scraped, "polyhost_model_downloading_time_microseconds_count") == 0
    assert value(scraped, "polyhost_model_loading_wait_time_microseconds_count") == 0
    assert not any(
        s.labels["container_name"] == "plain" for s in scraped["polyhost_loaded_models"][1]
    )
    # Without a MultiModel container, none of the families appear at all.
    assert "polyhost_loaded_models" not in scrape([sample("plain")])
