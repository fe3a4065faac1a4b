"""What a reader of metric history can ask, in CloudWatch's terms.

The history (`metrics/history.py`) answers these questions; the CloudWatch wire adapter, the
dashboard's JSON API and `polyhost top` ask them. Keeping the question and the answer in plain
types here lets each side be built and tested without the other.

Names follow CloudWatch (docs/contract.md, "Metrics"): namespace `AWS/SageMaker` holds the
invocation series (Invocations, Invocation4XXErrors, Invocation5XXErrors, ContainerLatency,
OverheadLatency, ModelLatency, InvocationsPerInstance, ModelSetupTime), namespace
`/aws/sagemaker/Endpoints` the sampled ones (CPUUtilization, MemoryUtilization, DiskUtilization,
...). Dimensions are `EndpointName`, `VariantName`, `ContainerName` (and `InstanceId` where
there are replicas).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

INVOCATION_NAMESPACE = "AWS/SageMaker"
RESOURCE_NAMESPACE = "/aws/sagemaker/Endpoints"
COMPONENT_NAMESPACE = "/aws/sagemaker/InferenceComponents"

Dimensions = tuple[tuple[str, str], ...]  # sorted by dimension name


def dimensions(**values: str) -> Dimensions:
    """Dimensions in their canonical order (sorted by name), so equal sets compare equal."""
    return tuple(sorted(values.items()))


@dataclass(frozen=True, slots=True)
class MetricId:
    namespace: str
    name: str
    dimensions: Dimensions

    def dimension(self, name: str) -> str | None:
        for key, value in self.dimensions:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Datapoint:
    """The statistics of one period, as GetMetricStatistics reports them.

    `percentiles` maps a percentile in (0, 100] to its value, for the ones asked for.
    """

    timestamp: float  # start of the period, epoch seconds
    sample_count: float
    sum: float
    minimum: float
    maximum: float
    unit: str
    percentiles: Mapping[float, float] = field(default_factory=dict)

    @property
    def average(self) -> float:
        return self.sum / self.sample_count if self.sample_count else 0.0


class MetricsReader(Protocol):
    """The history as its readers see it."""

    def list_metrics(self) -> Sequence[tuple[MetricId, float]]:
        """Every series with data, and when it last received a value (epoch seconds)."""
        ...

    def statistics(
        self,
        metric: MetricId,
        start: float,
        end: float,
        period_s: int,
        percentiles: Sequence[float] = (),
    ) -> list[Datapoint]:
        """One datapoint per period in [start, end) that has data, oldest first."""
        ...
