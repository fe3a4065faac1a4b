"""The metrics polyhost records, under SageMaker's CloudWatch names (docs/contract.md, "Metrics").

Each metric says its namespace, its CloudWatch unit and its kind, which decides what a period
of it must keep to answer percentiles (`metrics/cell.py`):

- LATENCY: many different values per period; the fine buckets are always kept.
- GAUGE: one sampled value per container and period (CPU, memory...); buckets only when a
  period holds several different values (replicas, or a roll-up of six samples).
- BINARY: every value is 0 or 1, one per invocation (Invocations is always 1, the error
  series 0 or 1, so their Average is the error rate, as on SageMaker); count and sum say
  everything, no buckets at all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from polyhost.metrics.query import COMPONENT_NAMESPACE, INVOCATION_NAMESPACE, RESOURCE_NAMESPACE


class Kind(enum.Enum):
    LATENCY = "latency"
    GAUGE = "gauge"
    BINARY = "binary"


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    namespace: str
    unit: str  # a CloudWatch StandardUnit
    kind: Kind


# Per container: dimensions EndpointName, VariantName, ContainerName (and InstanceId).
INVOCATIONS = MetricDef("Invocations", INVOCATION_NAMESPACE, "None", Kind.BINARY)
INVOCATION_4XX = MetricDef("Invocation4XXErrors", INVOCATION_NAMESPACE, "None", Kind.BINARY)
INVOCATION_5XX = MetricDef("Invocation5XXErrors", INVOCATION_NAMESPACE, "None", Kind.BINARY)
CONTAINER_LATENCY = MetricDef(
    "ContainerLatency", INVOCATION_NAMESPACE, "Microseconds", Kind.LATENCY
)
OVERHEAD_LATENCY = MetricDef("OverheadLatency", INVOCATION_NAMESPACE, "Microseconds", Kind.LATENCY)
# polyhost's own (SageMaker has no such metric): for InvokeEndpointWithResponseStream, the time
# from sending the call to the container until its answer's first body byte. The whole stream's
# time is ContainerLatency, as for any invocation (and so ModelLatency for the variant).
TIME_TO_FIRST_BYTE = MetricDef(
    "TimeToFirstByte", INVOCATION_NAMESPACE, "Microseconds", Kind.LATENCY
)
CPU = MetricDef("CPUUtilization", RESOURCE_NAMESPACE, "Percent", Kind.GAUGE)
MEMORY = MetricDef("MemoryUtilization", RESOURCE_NAMESPACE, "Percent", Kind.GAUGE)
DISK = MetricDef("DiskUtilization", RESOURCE_NAMESPACE, "Percent", Kind.GAUGE)
MEMORY_RSS = MetricDef("MemoryRSS", RESOURCE_NAMESPACE, "Bytes", Kind.GAUGE)
RESTARTS = MetricDef("ContainerRestarts", RESOURCE_NAMESPACE, "Count", Kind.GAUGE)
UP = MetricDef("ContainerUp", RESOURCE_NAMESPACE, "None", Kind.BINARY)

# Per inference component: dimension InferenceComponentName, as SageMaker names them. Its
# copies' Invocations, errors and ModelLatency (the copies' container latency) are the
# per-container definitions above under that dimension; the resource ones are normalized to
# what each copy reserved (NumberOfCpuCoresRequired, MinMemoryRequiredInMb), so 100 is a copy
# using all it reserved. NoCapacityInvocationFailures: invocations that found no copy.
CPU_NORMALIZED = MetricDef("CPUUtilizationNormalized", COMPONENT_NAMESPACE, "Percent", Kind.GAUGE)
MEMORY_NORMALIZED = MetricDef(
    "MemoryUtilizationNormalized", COMPONENT_NAMESPACE, "Percent", Kind.GAUGE
)
NO_CAPACITY_FAILURES = MetricDef(
    "NoCapacityInvocationFailures", INVOCATION_NAMESPACE, "None", Kind.BINARY
)
# InvocationsPerCopy: the component's invocations, each worth 1/its copies (as
# InvocationsPerInstance is per variant), which target tracking's
# SageMakerInferenceComponentInvocationsPerCopy follows.
INVOCATIONS_PER_COPY = MetricDef("InvocationsPerCopy", INVOCATION_NAMESPACE, "None", Kind.GAUGE)
# How many requests each instance (ConcurrentRequestsPerModel, per variant) or copy
# (ConcurrentRequestsPerCopy, per component) was serving at once, on average over the
# interval: by Little's law, the time the interval's requests spent in the containers over the
# interval's length, per instance or copy. Target tracking's ...ConcurrentRequests...
# HighResolution predefined metrics follow them.
CONCURRENT_PER_MODEL = MetricDef(
    "ConcurrentRequestsPerModel", INVOCATION_NAMESPACE, "None", Kind.GAUGE
)
CONCURRENT_PER_COPY = MetricDef(
    "ConcurrentRequestsPerCopy", INVOCATION_NAMESPACE, "None", Kind.GAUGE
)

# Per variant: dimensions EndpointName, VariantName.
MODEL_LATENCY = MetricDef("ModelLatency", INVOCATION_NAMESPACE, "Microseconds", Kind.LATENCY)
INVOCATIONS_PER_INSTANCE = MetricDef(
    "InvocationsPerInstance", INVOCATION_NAMESPACE, "None", Kind.GAUGE
)
# One value per container start (deploy or restart): launch until its first passed /ping.
MODEL_SETUP_TIME = MetricDef("ModelSetupTime", INVOCATION_NAMESPACE, "Microseconds", Kind.LATENCY)

# Per MultiModel container (dimensions as for the per-container series above), as SageMaker
# names them: the time an invocation waited for its model's load, the download and the
# container's load of one model, the unload of one; ModelCacheHit is 1 per invocation whose
# model was loaded already, 0 per one that waited. LoadedModelCount is sampled like CPU.
MODEL_LOADING_WAIT_TIME = MetricDef(
    "ModelLoadingWaitTime", INVOCATION_NAMESPACE, "Microseconds", Kind.LATENCY
)
MODEL_DOWNLOADING_TIME = MetricDef(
    "ModelDownloadingTime", INVOCATION_NAMESPACE, "Microseconds", Kind.LATENCY
)
MODEL_LOADING_TIME = MetricDef(
    "ModelLoadingTime", INVOCATION_NAMESPACE, "Microseconds", Kind.LATENCY
)
MODEL_UNLOADING_TIME = MetricDef(
    "ModelUnloadingTime", INVOCATION_NAMESPACE, "Microseconds", Kind.LATENCY
)
MODEL_CACHE_HIT = MetricDef("ModelCacheHit", INVOCATION_NAMESPACE, "None", Kind.BINARY)
LOADED_MODEL_COUNT = MetricDef("LoadedModelCount", RESOURCE_NAMESPACE, "None", Kind.GAUGE)

# Per endpoint with AsyncInferenceConfig, dimension EndpointName, as SageMaker publishes them:
# the backlog (requests queued or running), sampled every 10 s like CPU. The per-instance
# share divides by the endpoint's instances (by 1 when it has none); HasBacklogWithoutCapacity
# is 1 while requests wait and no instance runs, else 0.
APPROXIMATE_BACKLOG_SIZE = MetricDef(
    "ApproximateBacklogSize", INVOCATION_NAMESPACE, "None", Kind.GAUGE
)
APPROXIMATE_BACKLOG_SIZE_PER_INSTANCE = MetricDef(
    "ApproximateBacklogSizePerInstance", INVOCATION_NAMESPACE, "None", Kind.GAUGE
)
APPROXIMATE_AGE_OF_OLDEST_REQUEST = MetricDef(
    "ApproximateAgeOfOldestRequest", INVOCATION_NAMESPACE, "Seconds", Kind.GAUGE
)
HAS_BACKLOG_WITHOUT_CAPACITY = MetricDef(
    "HasBacklogWithoutCapacity", INVOCATION_NAMESPACE, "None", Kind.BINARY
)
# Per asynchronous request finished, dimensions EndpointName, VariantName (EndpointName alone
# for one that failed before any variant was known): InvocationsProcesssed is 1 per request
# (SageMaker's spelling, three s), InvocationFailures 0 or 1, so its Average is the failure
# rate; TimeInBacklog from acceptance until it left the queue to run, TotalProcessingTime until
# its answer (or failure) was written and notified.
INVOCATIONS_PROCESSED = MetricDef(
    "InvocationsProcesssed", INVOCATION_NAMESPACE, "None", Kind.BINARY
)
INVOCATION_FAILURES = MetricDef("InvocationFailures", INVOCATION_NAMESPACE, "None", Kind.BINARY)
TIME_IN_BACKLOG = MetricDef("TimeInBacklog", INVOCATION_NAMESPACE, "Milliseconds", Kind.LATENCY)
TOTAL_PROCESSING_TIME = MetricDef(
    "TotalProcessingTime", INVOCATION_NAMESPACE, "Milliseconds", Kind.LATENCY
)

# Capacity as it runs, sampled each interval (what Application Auto Scaling's charts show beside
# the invocations): per variant (EndpointName, VariantName) its instances running containers of
# its own model, per inference component (InferenceComponentName) its running copies. A
# resource with nothing running (a component at 0 copies) records nothing, as every gauge.
INSTANCE_COUNT = MetricDef("InstanceCount", RESOURCE_NAMESPACE, "Count", Kind.GAUGE)
COPY_COUNT = MetricDef("CopyCount", RESOURCE_NAMESPACE, "Count", Kind.GAUGE)

ALL: tuple[MetricDef, ...] = (
    INVOCATIONS, INVOCATION_4XX, INVOCATION_5XX, CONTAINER_LATENCY, OVERHEAD_LATENCY,
    CPU, MEMORY, DISK, MEMORY_RSS, RESTARTS, UP, MODEL_LATENCY, INVOCATIONS_PER_INSTANCE,
    MODEL_SETUP_TIME, TIME_TO_FIRST_BYTE, MODEL_LOADING_WAIT_TIME, MODEL_DOWNLOADING_TIME,
    MODEL_LOADING_TIME, MODEL_UNLOADING_TIME, MODEL_CACHE_HIT, LOADED_MODEL_COUNT,
    APPROXIMATE_BACKLOG_SIZE, APPROXIMATE_BACKLOG_SIZE_PER_INSTANCE,
    APPROXIMATE_AGE_OF_OLDEST_REQUEST, HAS_BACKLOG_WITHOUT_CAPACITY, INVOCATIONS_PROCESSED,
    INVOCATION_FAILURES, TIME_IN_BACKLOG, TOTAL_PROCESSING_TIME, INVOCATIONS_PER_COPY,
    INSTANCE_COUNT, COPY_COUNT, CONCURRENT_PER_MODEL, CONCURRENT_PER_COPY,
)  # fmt: skip
BY_KEY: dict[tuple[str, str], MetricDef] = {(m.namespace, m.name): m for m in ALL}
