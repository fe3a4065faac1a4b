"""The series of asynchronous endpoints (InvokeEndpointAsync), as the recorder reads them.

Two kinds, from two places (`metrics/catalog.py` names them):

- the backlog, a `BacklogSample` per endpoint: how many requests are queued or running, the
  oldest one's age and the instances that could run them. It is counted by the queue's one
  aggregate query (`asyncinf/queue.py`), so it is sampled like CPU, once per interval, and the
  recorder awaits it (in a worker thread) rather than counting on the hot path;
- what finished requests did, kept by the worker in `AsyncSeries` as each request ends: counts
  and two latency histograms in milliseconds per (endpoint, variant). The recorder takes the
  interval's outcomes whole (`take`), so a deleted endpoint's entry is gone after one interval
  and nothing grows with the endpoints a server has seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from polyhost.metrics.series import LatencyHistogram


@dataclass(frozen=True, slots=True)
class BacklogSample:
    """One asynchronous endpoint's backlog at the moment it was counted."""

    endpoint: str
    size: int  # requests queued or running
    oldest_age_s: float  # seconds since the oldest of them was accepted; 0 without any
    instances: int  # instances serving the endpoint now (0 while it does not serve)

    @property
    def per_instance(self) -> float:
        """The backlog each instance has to work through; the whole of it with no instance."""
        return self.size / max(self.instances, 1)

    @property
    def without_capacity(self) -> bool:
        return self.size > 0 and self.instances == 0


@dataclass(slots=True)
class AsyncOutcomes:
    """What the finished requests of one variant did in the interval being recorded.

    The histograms hold milliseconds (TimeInBacklog, TotalProcessingTime), and only this
    interval's values: the recorder reads them whole and starts afresh."""

    processed: int = 0
    failures: int = 0
    time_in_backlog: LatencyHistogram = field(default_factory=LatencyHistogram)
    total_processing: LatencyHistogram = field(default_factory=LatencyHistogram)


class AsyncSeries:
    """The worker's side: `finished` for every request that ends (on the event loop)."""

    def __init__(self) -> None:
        self._outcomes: dict[tuple[str, str | None], AsyncOutcomes] = {}

    def finished(
        self,
        endpoint: str,
        variant: str | None,
        *,
        ok: bool,
        backlog_ms: float | None,
        total_ms: float,
    ) -> None:
        """One request ended. `variant` is None for one that failed before any variant was
        known (its endpoint never served while it waited); `backlog_ms` None for one that
        never left the queue to run (it expired there)."""
        key = (endpoint, variant)
        outcomes = self._outcomes.get(key)
        if outcomes is None:
            outcomes = self._outcomes[key] = AsyncOutcomes()
        outcomes.processed += 1
        if not ok:
            outcomes.failures += 1
        if backlog_ms is not None:
            outcomes.time_in_backlog.observe(max(backlog_ms, 0.0))
        outcomes.total_processing.observe(max(total_ms, 0.0))

    def take(self) -> dict[tuple[str, str | None], AsyncOutcomes]:
        """Every variant's outcomes since the last call, and start a new interval."""
        taken, self._outcomes = self._outcomes, {}
        return taken
