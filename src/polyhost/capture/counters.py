"""How many captured invocations were written, dropped and failed, per endpoint variant, and
their Prometheus series (`GET /metrics` on the admin listener).

- written: in S3 (`polyhost_data_capture_records_total`);
- dropped: never queued: the buffer was full, or the invocation was larger than one record may
  be (`polyhost_data_capture_dropped_total`);
- failed: queued, but S3 did not take them: the bucket is missing, the role may not write, S3
  is down (`polyhost_data_capture_failed_total`).

`dropped` is only counted on the event loop and the other two only by the writer thread, so
no count is written from two threads.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

LABELS = ["endpoint_name", "variant_name"]


@dataclass(slots=True)
class CaptureCounts:
    written: int = 0
    dropped: int = 0
    failed: int = 0


class CaptureCounters:
    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], CaptureCounts] = {}

    def of(self, endpoint: str, variant: str) -> CaptureCounts:
        key = (endpoint, variant)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts.setdefault(key, CaptureCounts())  # atomic: one wins
        return counts

    def forget(self, endpoint: str) -> None:
        """A deleted endpoint's counts go with it, so nothing grows with the endpoints seen."""
        self._counts = {k: v for k, v in self._counts.items() if k[0] != endpoint}

    def items(self) -> list[tuple[tuple[str, str], CaptureCounts]]:
        return sorted(self._counts.items())

    def totals(self) -> CaptureCounts:
        total = CaptureCounts()
        for _, counts in self.items():
            total.written += counts.written
            total.dropped += counts.dropped
            total.failed += counts.failed
        return total


class CaptureCollector(Collector):
    def __init__(self, counters: CaptureCounters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        written = CounterMetricFamily(
            "polyhost_data_capture_records",
            "Captured invocations written to S3 (DataCaptureConfig).",
            labels=LABELS,
        )
        dropped = CounterMetricFamily(
            "polyhost_data_capture_dropped",
            "Sampled invocations not captured: the capture buffer was full, or the invocation "
            "was larger than one record may be.",
            labels=LABELS,
        )
        failed = CounterMetricFamily(
            "polyhost_data_capture_failed",
            "Captured invocations S3 did not take (missing bucket, denied, unreachable).",
            labels=LABELS,
        )
        for (endpoint, variant), counts in self._counters.items():
            labels = [endpoint, variant]
            written.add_metric(labels, counts.written)
            dropped.add_metric(labels, counts.dropped)
            failed.add_metric(labels, counts.failed)
        yield written
        yield dropped
        yield failed
