"""The seam between the control plane and the deployer.

The control plane records *desired* state and hands the deployer a frozen `EndpointSpec` (a
snapshot of the endpoint config and its models taken when CreateEndpoint/UpdateEndpoint was
accepted — deleting a model later does not disturb a running endpoint, as on SageMaker). The
deployer makes it so and reports progress back through `StatusSink`. Neither side knows how the
other is built: the control plane never starts a process, and the deployer never touches SQLite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

InferenceMode = Literal["Serial", "Direct"]
RoutingStrategy = Literal["LEAST_OUTSTANDING_REQUESTS", "RANDOM"]

EndpointStatus = Literal[
    "OutOfService",
    "Creating",
    "Updating",
    "SystemUpdating",
    "RollingBack",
    "InService",
    "Deleting",
    "Failed",
    "UpdateRollbackFailed",
]


@dataclass(frozen=True)
class ContainerSpec:
    """One container of a model, hostname already resolved (Serial ones from their position)."""

    hostname: str
    image: str
    model_data_url: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    # Mode MultiModel: `model_data_url` is the prefix TargetModel names archives below, loaded
    # into the container on demand; `model_cache` False (ModelCacheSetting Disabled) unloads a
    # model after each invocation.
    multi_model: bool = False
    model_cache: bool = True


@dataclass(frozen=True)
class ServerlessSpec:
    """A variant's ServerlessConfig (docs/serverless.md): one instance, started on the first
    request and stopped after `--serverless-idle-s` without one, unless `provisioned`
    (ProvisionedConcurrency) keeps it warm; MemorySizeInMB is its memory limit (the variant's
    `memory_mb`); requests beyond `max_concurrency` in flight are throttled."""

    memory_mb: int
    max_concurrency: int
    provisioned_concurrency: int | None = None


@dataclass(frozen=True)
class VariantSpec:
    """One production variant: a model's container group, replicated `instance_count` times."""

    variant_name: str
    model_name: str
    containers: tuple[ContainerSpec, ...]
    mode: InferenceMode
    instance_count: int = 1
    initial_weight: float = 1.0
    instance_type: str | None = None
    startup_timeout_s: int | None = None  # None: the server's default (SageMaker: 240 s)
    download_timeout_s: int = 3600
    # The model's ExecutionRoleArn: its containers get that role's credentials, if the server
    # maps the role to a credentials source (and none otherwise).
    execution_role_arn: str | None = None
    # An inference component's copies: what each copy may use (its ComputeResourceRequirements;
    # None: the image's limits), how a request picks a copy, and the endpoint instance each
    # copy was placed on (`control.placement`), in copy order.
    cpus: float | None = None
    memory_mb: int | None = None
    reserved_memory_mb: int | None = None  # MinMemoryRequiredInMb: what placement reserved
    routing: RoutingStrategy = "LEAST_OUTSTANDING_REQUESTS"
    copy_instances: tuple[int, ...] = ()
    # A variant for components with ManagedInstanceScaling enabled: its instance count's bounds.
    min_instances: int | None = None
    max_instances: int | None = None
    # One of ShadowProductionVariants: it runs as any variant, but is never picked for a
    # request; it gets a copy of each request to the production variant, its answer dropped.
    shadow: bool = False
    # ServerlessConfig: `instance_count` is 0 while cold, 1 while warm.
    serverless: ServerlessSpec | None = None


BatchKind = Literal["COPY_COUNT", "INSTANCE_COUNT", "CAPACITY_PERCENT"]


def batch_of(kind: BatchKind, value: int, count: int) -> int:
    """The instances (or copies) of a fleet of `count` a CapacitySize names: COPY_COUNT and
    INSTANCE_COUNT as given, CAPACITY_PERCENT of `count` rounded up; at least one."""
    if kind == "CAPACITY_PERCENT":
        return max(1, -(-count * value // 100))
    return max(1, value)


@dataclass(frozen=True)
class RollingUpdate:
    """A RollingUpdatePolicy (docs/deployment-guardrails.md): UpdateInferenceComponent's, whose
    copies are replaced, or UpdateEndpoint's, whose one variant's instances are. `batch` at a
    time (MaximumBatchSize: COPY_COUNT or INSTANCE_COUNT, or CAPACITY_PERCENT of the new fleet)
    new ones start and are routed to beside the old, baked `wait_s` with `alarms` watched, then
    as many old ones leave the route, drain and stop. An alarm in ALARM, new ones that fail to
    start, or `timeout_s` passed roll it back, `rollback_batch` at a time
    (RollbackMaximumBatchSize; None: the whole old fleet at once)."""

    batch_type: BatchKind
    batch_value: int
    wait_s: float
    timeout_s: float = 28_800.0
    rollback_type: BatchKind | None = None
    rollback_value: int = 100
    alarms: tuple[str, ...] = ()

    def batch(self, count: int) -> int:
        """The batch of a rolling step for a new fleet of `count`."""
        return batch_of(self.batch_type, self.batch_value, count)

    def rollback_batch(self, count: int) -> int:
        """The batch of a rollback step for an old fleet of `count`."""
        if self.rollback_type is None:
            return max(1, count)
        return batch_of(self.rollback_type, self.rollback_value, count)


@dataclass(frozen=True)
class BlueGreenUpdate:
    """UpdateEndpoint's DeploymentConfig.BlueGreenUpdatePolicy (docs/deployment-guardrails.md):
    the new fleet starts beside the old one; `steps` are, per step and per variant (in the
    order of `variants`), how many of the new fleet's instances are routed to beside the old
    fleet, each step baked `wait_s` (CANARY: one step; LINEAR: one per LinearStepSize;
    ALL_AT_ONCE: none, the bake follows the whole shift). Then all traffic moves to the new
    fleet, the old one is kept `termination_wait_s`, then drained and stopped. An alarm of
    `alarms` in ALARM meanwhile, or `timeout_s` passed, rolls it back to the old fleet."""

    traffic: Literal["ALL_AT_ONCE", "CANARY", "LINEAR"]
    wait_s: float
    steps: tuple[tuple[int, ...], ...] = ()
    variants: tuple[str, ...] = ()
    termination_wait_s: float = 0.0
    timeout_s: float | None = None
    alarms: tuple[str, ...] = ()


# The state of a CloudWatch alarm by name (ALARM, OK, INSUFFICIENT_DATA), None when there is
# no such alarm: how the control plane checks AutoRollbackConfiguration's alarms and the
# deployer watches them (the server hands both the alarm service's reader).
AlarmReader = Callable[[str], str | None]


@dataclass(frozen=True)
class ComponentRef:
    """What an inference component's deployment belongs to: its deployment runs under a key of
    its own (`component_key`), and its metrics and logs are named for the endpoint."""

    component_name: str
    endpoint_name: str
    variant_name: str


@dataclass(frozen=True)
class AsyncInferenceSpec:
    """An endpoint config's AsyncInferenceConfig: the endpoint takes only InvokeEndpointAsync,
    whose requests wait in the server's queue and whose answers go to S3."""

    output_path: str  # S3OutputPath: answers go to <output_path>/<InferenceId>.out
    failure_path: str | None = None  # S3FailurePath: failures go to <path>/<InferenceId>-error.out
    max_concurrent_per_instance: int = 1  # ClientConfig.MaxConcurrentInvocationsPerInstance
    success_topic: str | None = None  # NotificationConfig.SuccessTopic (an SNS topic ARN)
    error_topic: str | None = None
    # IncludeInferenceResponseIn: the notifications that carry the answer itself.
    include_response_in: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataCaptureSpec:
    """An endpoint config's DataCaptureConfig: which invocations the runtime copies to S3, and
    where (`capture/` writes them; docs/data-capture.md)."""

    destination: str  # DestinationS3Uri: s3://bucket/prefix
    sampling_percentage: int  # InitialSamplingPercentage, 0-100
    enabled: bool = True  # EnableCapture (SageMaker's default is on)
    capture_input: bool = True  # CaptureOptions: Input (or InputAndOutput)
    capture_output: bool = True  # CaptureOptions: Output (or InputAndOutput)
    # CaptureContentTypeHeader: content types captured as text, encoding CSV or JSON; any
    # other is captured base64 (BASE64).
    csv_content_types: tuple[str, ...] = ()
    json_content_types: tuple[str, ...] = ()
    kms_key_id: str | None = None  # echoed: nothing is encrypted with it here


@dataclass(frozen=True)
class EndpointSpec:
    """Everything the deployer needs to run an endpoint; `revision` grows with every update."""

    endpoint_name: str
    endpoint_arn: str
    endpoint_config_name: str
    variants: tuple[VariantSpec, ...]
    revision: int
    async_inference: AsyncInferenceSpec | None = None
    data_capture: DataCaptureSpec | None = None
    # An endpoint whose variants run no model: inference components are placed on its
    # instances, and each invocation names one (`InferenceComponentName`).
    for_components: bool = False
    # Set on an inference component's deployment (its `endpoint_name` is `component_key`).
    component: ComponentRef | None = None
    # How this revision replaces the copies of the one serving (None: all at once).
    rolling: RollingUpdate | None = None
    # UpdateEndpointWeightsAndCapacities: this revision differs from the one before only in
    # its variants' instance counts and weights, and may be applied to the serving group in
    # place. UpdateEndpoint never sets it: its revision replaces every container (a restart
    # is what some callers want of it, fresh credentials for one).
    in_place: bool = False
    # UpdateEndpoint's DeploymentConfig: how this revision's fleet replaces the serving one,
    # a BlueGreenUpdatePolicy or a RollingUpdatePolicy (None: all at once, once it is
    # healthy, as without a DeploymentConfig).
    guardrails: BlueGreenUpdate | RollingUpdate | None = None

    @property
    def rolling_update(self) -> RollingUpdate | None:
        """How this revision replaces the serving one in batches, if it does: an inference
        component's RollingUpdatePolicy, or UpdateEndpoint's."""
        if self.rolling is not None:
            return self.rolling
        return self.guardrails if isinstance(self.guardrails, RollingUpdate) else None

    @property
    def blue_green(self) -> BlueGreenUpdate | None:
        """UpdateEndpoint's BlueGreenUpdatePolicy, if this revision is deployed by one."""
        return self.guardrails if isinstance(self.guardrails, BlueGreenUpdate) else None


@dataclass(frozen=True)
class VariantStatus:
    """What the deployer reports per variant; becomes DescribeEndpoint's ProductionVariants."""

    variant_name: str
    current_instance_count: int
    desired_instance_count: int
    current_weight: float
    desired_weight: float
    deployed_images: tuple[str, ...] = ()
    status: str = "Creating"


@dataclass(frozen=True)
class StatusReport:
    """A status change of one endpoint revision, reported by the deployer."""

    endpoint_name: str
    revision: int
    status: EndpointStatus
    failure_reason: str | None = None
    variants: tuple[VariantStatus, ...] = ()
    # The config now serving (after a successful update it is the new one).
    serving_config_name: str | None = None


class StatusSink(Protocol):
    """Implemented by the control plane; the deployer calls it, from any thread."""

    def report(self, report: StatusReport) -> None: ...


class Deployer(Protocol):
    """Implemented by the deployer; the control plane calls it after committing a change."""

    def apply(self, spec: EndpointSpec) -> None:
        """Run `spec` (create, or blue/green update to a newer revision). Returns at once."""
        ...

    def remove(self, endpoint_name: str) -> None:
        """Stop everything of the endpoint. Returns at once; the deployer reports nothing more."""
        ...
