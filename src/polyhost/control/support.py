"""Which members of SageMaker's requests polyhost honours, echoes or refuses (`awsmodel.support`).

Every member of the input shape of every operation the control plane serves has an entry here
(`tests/control/test_support.py` walks botocore's model to make sure); `ControlPlane.call`
refuses a request that uses a refused member, after the model's and the cross-field
validation (SageMaker's own messages for bad values come first) and before the operation runs.
`docs/supported-members.md` is rendered from these tables (`python -m polyhost.control.support
--write`), and the same test checks it is current; `docs/unsupported.md` says what to do
instead.

Honoured claims are the code's: each names where the member is used. Echoed members are stored
and shown by Describe (the output shapes have them) and mean nothing on one machine, for the
reason given.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from polyhost.autoscaling.support import SUPPORT as AUTOSCALING_SUPPORT
from polyhost.awsmodel.shapes import Schema, load_schema
from polyhost.awsmodel.support import (
    OperationTable,
    Support,
    counts,
    echoed,
    honoured,
    refusal_message,
    refusals,
    refused,
    render_table,
)
from polyhost.errors import ValidationException
from polyhost.logs.api import SUPPORT as LOGS_SUPPORT
from polyhost.metrics.cloudwatch_api import SUPPORT as CLOUDWATCH_SUPPORT
from polyhost.settings import Settings

NETWORK_ISOLATION = "network-isolation"
# How the docs say when a capability is there.
CAPABILITIES = {
    NETWORK_ISOLATION: (
        "when the server isolates each instance's network (`--isolate`, on by default with "
        "`--auth-file`; not on the ray backend)"
    ),
}


def capabilities(settings: Settings) -> frozenset[str]:
    """What this server can honour that another may not. Network isolation is the settings'
    answer that `backends.confinement.plan` also reads (a server that could not isolate as
    asked does not start): each instance gets a network namespace with only a loopback, so
    its containers make no network calls in or out, which is what EnableNetworkIsolation asks."""
    found: set[str] = set()
    if settings.isolation_wanted and settings.backend != "ray":
        found.add(NETWORK_ISOLATION)
    return frozenset(found)


# -- shared parts -------------------------------------------------------------------------------

_TAGS: dict[str, Support] = {
    "Tags": honoured(
        "stored with the resource; ListTags shows them, AddTags and DeleteTags "
        "change them (50 at most)"
    ),
    "Tags[].Key": honoured("the tag's key (unique, not starting with aws:)"),
    "Tags[].Value": honoured("the tag's value"),
}

_VPC = echoed(
    "containers reach what this machine's network reaches (nothing at all when the server "
    "isolates instances): there is no VPC, subnet or security group to join"
)

_NETWORK_ISOLATION = refused(
    "network isolation without --isolate, which gives each instance a network of its own",
    accepts=(False,),
    unless=NETWORK_ISOLATION,
)


def _container(path: str) -> dict[str, Support]:
    """A ContainerDefinition at `path` (PrimaryContainer, Containers[]): `specs.model_containers`
    reads Image, ContainerHostname, ModelDataUrl and Environment."""
    at = f"{path}."
    return {
        at + "ContainerHostname": honoured(
            "the container's name: TargetContainerHostname in Direct mode, its log stream and "
            "its metrics' ContainerName"
        ),
        at + "Image": honoured("the image the container runs, from the server's image catalog"),
        at + "ImageConfig": echoed(
            "images come from the server's image catalog (`--image-config`), so where SageMaker "
            "would pull one from (ECR, or a registry in a VPC with its credentials Lambda) "
            "means nothing here"
        ),
        at + "Mode": honoured(
            "SingleModel, or MultiModel: ModelDataUrl is a prefix and InvokeEndpoint's "
            "TargetModel names the archive below it, loaded on demand (docs/multi-model.md)"
        ),
        at + "ModelDataUrl": honoured(
            "fetched (s3, https, file) and extracted into the container's model dir before it "
            "starts"
        ),
        at + "ModelDataSource": refused("model data sources: uncompressed or S3-prefix model data"),
        at + "AdditionalModelDataSources": refused("additional model data sources"),
        at + "Environment": honoured("the container's environment"),
        at + "ModelPackageName": refused("model packages (the SageMaker model registry)"),
        at + "InferenceSpecificationName": refused("model packages' inference specifications"),
        at + "MultiModelConfig": honoured("how a multi-model container caches its models"),
        # An honoured structure needs an entry per member, so a member botocore adds to it later
        # cannot pass unnoticed.
        at + "MultiModelConfig.ModelCacheSetting": honoured(
            "Enabled keeps models loaded until memory needs room, Disabled unloads a model "
            "after each invocation"
        ),
        at + "ContainerMetricsConfig": refused("scraping a container's own metrics endpoint"),
    }


def _variant(path: str) -> dict[str, Support]:
    """A ProductionVariant at `path`: `specs.build_spec` reads what is honoured here."""
    at = f"{path}."
    return {
        at + "VariantName": honoured(
            "the variant's name: TargetVariant, its log streams and metrics, Describe's summary"
        ),
        at + "ModelName": honoured("the model the variant serves (snapshotted at deploy)"),
        at + "InitialInstanceCount": honoured(
            "that many instances, each running every container of the model"
        ),
        at + "InstanceType": echoed(
            "instances are slices of this one machine: the type is kept and shown, but what a "
            "container may use comes from its image's cpus and memory in `--image-config`"
        ),
        at + "InstancePools": refused("instance pools"),
        at + "VariantInstanceProvisionTimeoutInSeconds": echoed(
            "an instance here needs no capacity to be provisioned, so there is nothing for this "
            "timeout to bound (model download and container startup have their own, honoured)"
        ),
        at + "InitialVariantWeight": honoured("the variant's share of the endpoint's traffic"),
        at + "AcceleratorType": refused("Elastic Inference accelerators"),
        at + "CoreDumpConfig": refused("core dumps of a failing container to S3"),
        at + "ServerlessConfig": honoured(
            "a serverless variant (docs/serverless.md): no process until a request comes, "
            "stopped after `--serverless-idle-s` without one; not beside InstanceType or "
            "InitialInstanceCount"
        ),
        at + "ServerlessConfig.MemorySizeInMB": honoured(
            "the container's memory limit (1024-6144, in steps of 1024)"
        ),
        at + "ServerlessConfig.MaxConcurrency": honoured(
            "requests in flight at most; past it ThrottlingException (HTTP 400)"
        ),
        at + "ServerlessConfig.ProvisionedConcurrency": honoured(
            "one instance kept warm always (at most MaxConcurrency)"
        ),
        at + "VolumeSizeInGB": echoed(
            "no storage volume is attached to an instance here: model data sits in the "
            "server's state dir, on the host's disk"
        ),
        at + "ModelDataDownloadTimeoutInSeconds": honoured(
            "bounds fetching and extracting the model data"
        ),
        at + "ContainerStartupHealthCheckTimeoutInSeconds": honoured(
            "how long a container may take to pass its first ping (else `--startup-timeout`)"
        ),
        at + "EnableSSMAccess": refused("SSM access to instances", accepts=(False,)),
        at + "ManagedInstanceScaling": honoured(
            "a variant for inference components: instances are added up to MaxInstanceCount "
            "when a copy fits nowhere, and empty ones removed down to MinInstanceCount "
            "(control/placement.py)"
        ),
        at + "ManagedInstanceScaling.Status": honoured("ENABLED turns managed scaling on"),
        at + "ManagedInstanceScaling.MinInstanceCount": honoured("the fewest instances kept"),
        at + "ManagedInstanceScaling.MaxInstanceCount": honoured("the most instances added"),
        at + "ManagedInstanceScaling.ScaleInPolicy": refused(
            "scale-in policies: an instance left empty is removed at once"
        ),
        at + "RoutingConfig": honoured("how a request picks an instance of the variant"),
        at + "RoutingConfig.RoutingStrategy": honoured(
            "LEAST_OUTSTANDING_REQUESTS (the default) or RANDOM among the instances (or a "
            "component's copies) that can serve"
        ),
        at + "RoutingConfig.PrefixAwareRoutingConfig": refused("prefix-aware routing"),
        at + "InferenceAmiVersion": echoed(
            "containers run on this machine's own system and drivers: there is no AMI to pick "
            "(images built for accelerators are refused at CreateModel)"
        ),
        at + "CapacityReservationConfig": refused("capacity reservations"),
        at + "AcceleratorPartitionLayouts": refused("accelerator partitions"),
    }


# CreateEndpoint has no fleet to replace: its DeploymentConfig would only be kept for later
# updates, which take their own (or RetainDeploymentConfig: the last one given).
_CREATE_DEPLOYMENT_CONFIG = refused(
    "deployment guardrails at creation: give the DeploymentConfig to UpdateEndpoint, where "
    "they are honoured"
)

# UpdateEndpoint's deployment guardrails (`control.guardrails` checks and plans them,
# `deploy.deployer._blue_green` and `_roll` run them; docs/deployment-guardrails.md).
_BLUE_GREEN = "DeploymentConfig.BlueGreenUpdatePolicy"
_ROUTING = f"{_BLUE_GREEN}.TrafficRoutingConfiguration"
_ROLLING = "DeploymentConfig.RollingUpdatePolicy"


def _capacity_size(
    path: str, what: str, fleet: str = "each variant's new fleet", rounded: str = "down"
) -> dict[str, Support]:
    return {
        path: honoured(what),
        f"{path}.Type": honoured(
            f"INSTANCE_COUNT (instances of {fleet}) or CAPACITY_PERCENT (of them, rounded "
            f"{rounded})"
        ),
        f"{path}.Value": honoured(f"the size, checked against {fleet}"),
    }


_UPDATE_DEPLOYMENT_CONFIG: dict[str, Support] = {
    "DeploymentConfig": honoured("how the new fleet replaces the serving one"),
    _BLUE_GREEN: honoured(
        "the new fleet starts beside the old one, takes its share of traffic, then all of it"
    ),
    _ROUTING: honoured("how traffic shifts to the new fleet"),
    f"{_ROUTING}.Type": honoured(
        "ALL_AT_ONCE, CANARY (a share, baked, then the rest) or LINEAR (in steps, each baked)"
    ),
    f"{_ROUTING}.WaitIntervalInSeconds": honoured(
        "the bake after each step (after the whole shift for ALL_AT_ONCE), alarms watched"
    ),
    **_capacity_size(
        f"{_ROUTING}.CanarySize",
        "the new fleet's instances that take traffic beside the old fleet first (at most half)",
    ),
    **_capacity_size(
        f"{_ROUTING}.LinearStepSize",
        "the new fleet's instances added to the traffic at each step (10% to 50% of them)",
    ),
    f"{_BLUE_GREEN}.TerminationWaitInSeconds": honoured(
        "the old fleet is kept (alarms watched) this long after the shift, then drained, stopped"
    ),
    f"{_BLUE_GREEN}.MaximumExecutionTimeoutInSeconds": honoured(
        "past it the deployment is rolled back"
    ),
    _ROLLING: honoured(
        "the one variant's instances replaced in batches: new ones started and routed to "
        "beside the old, baked, then as many old ones drained and stopped"
    ),
    **_capacity_size(
        f"{_ROLLING}.MaximumBatchSize",
        "the instances replaced at a time, 5% to 50% of the variant's",
        fleet="the variant's new fleet",
        rounded="up",
    ),
    f"{_ROLLING}.WaitIntervalInSeconds": honoured(
        "the bake of each batch beside the old fleet, alarms watched, before old ones stop"
    ),
    f"{_ROLLING}.MaximumExecutionTimeoutInSeconds": honoured(
        "past it the update is rolled back (8 hours without it)"
    ),
    **_capacity_size(
        f"{_ROLLING}.RollbackMaximumBatchSize",
        "a rollback's batch: old instances started again, as many new ones stopped (without "
        "it, the whole old fleet at once)",
        fleet="the old fleet",
        rounded="up",
    ),
    "DeploymentConfig.AutoRollbackConfiguration": honoured("alarms that roll the update back"),
    "DeploymentConfig.AutoRollbackConfiguration.Alarms": honoured(
        "CloudWatch alarms of this server, which must exist; one in ALARM during the "
        "deployment (blue/green or rolling) rolls it back to the old fleet"
    ),
    "DeploymentConfig.AutoRollbackConfiguration.Alarms[].AlarmName": honoured("the alarm's name"),
}


def _list(*members: str) -> dict[str, Support]:
    """A List* operation's members (`listing.page_query` reads each)."""
    what = {
        "SortBy": honoured("the order of the listing"),
        "SortOrder": honoured("ascending or descending"),
        "NextToken": honoured("continues the listing where the previous page ended"),
        "MaxResults": honoured("the page's size"),
        "NameContains": honoured("names containing it, ignoring case"),
        "CreationTimeBefore": honoured("created before it"),
        "CreationTimeAfter": honoured("created after it"),
        "LastModifiedTimeBefore": honoured("last modified before it"),
        "LastModifiedTimeAfter": honoured("last modified after it"),
        "StatusEquals": honoured("endpoints in that status"),
    }
    return {member: what[member] for member in members}


_LISTING = ("SortBy", "SortOrder", "NextToken", "MaxResults", "NameContains")
_CREATED = ("CreationTimeBefore", "CreationTimeAfter")
_COMPONENT_SPECIFICATION = {
    "Specification": honoured("what each copy runs and reserves"),
    "Specification.ModelName": honoured("a model of one container, created with CreateModel"),
    "Specification.Container": honoured("an inline container instead of a model"),
    "Specification.Container.Image": honoured("the image each copy runs"),
    "Specification.Container.ArtifactUrl": honoured("the model data each copy loads"),
    "Specification.Container.Environment": honoured("the container's environment"),
    "Specification.Container.ContainerMetricsConfig": refused(
        "scraping a container's own metrics endpoint"
    ),
    "Specification.StartupParameters": honoured("the copies' download and startup bounds"),
    "Specification.StartupParameters.ModelDataDownloadTimeoutInSeconds": honoured(
        "bounds fetching and extracting the model data"
    ),
    "Specification.StartupParameters.ContainerStartupHealthCheckTimeoutInSeconds": honoured(
        "how long a copy may take to pass its first ping"
    ),
    "Specification.ComputeResourceRequirements": honoured(
        "what each copy reserves on its instance, and the limits it runs under"
    ),
    "Specification.ComputeResourceRequirements.NumberOfCpuCoresRequired": honoured(
        "vCPUs reserved per copy, and the copy's CPU limit"
    ),
    "Specification.ComputeResourceRequirements.MinMemoryRequiredInMb": honoured(
        "memory reserved per copy on its instance"
    ),
    "Specification.ComputeResourceRequirements.MaxMemoryRequiredInMb": honoured(
        "the copy's memory limit (else its image's)"
    ),
    "Specification.ComputeResourceRequirements.NumberOfAcceleratorDevicesRequired": refused(
        "accelerator devices: polyhost runs CPU stacks"
    ),
    "Specification.ComputeResourceRequirements.AcceleratorPartitionType": refused(
        "accelerator partitions"
    ),
    "Specification.BaseInferenceComponentName": refused(
        "adapter inference components on a base component"
    ),
    "Specification.DataCacheConfig": refused("caching a component's model data per instance"),
    "Specification.SchedulingConfig": refused(
        "placement strategies (copies are spread: one per instance first)"
    ),
    "Specification.InstanceType": refused("components on instances of more than one type"),
    "Specifications": refused("components with several specifications"),
    "RuntimeConfig": honoured("the component's copies"),
    "RuntimeConfig.CopyCount": honoured("how many copies run (0 allowed)"),
}


SUPPORT: dict[str, OperationTable] = {
    "CreateModel": {
        "ModelName": honoured("the model's name"),
        "PrimaryContainer": honoured("the model's one container"),
        **_container("PrimaryContainer"),
        "Containers": honoured("the model's containers: a Serial pipeline or Direct"),
        **_container("Containers[]"),
        "InferenceExecutionConfig": honoured("how the containers are invoked"),
        "InferenceExecutionConfig.Mode": honoured("Serial (a pipeline) or Direct"),
        "ExecutionRoleArn": honoured(
            "the containers get this role's credentials, as the server is told them "
            "(docs/credentials.md)"
        ),
        **_TAGS,
        "VpcConfig": _VPC,
        "EnableNetworkIsolation": _NETWORK_ISOLATION,
    },
    "DescribeModel": {"ModelName": honoured("the model described")},
    "ListModels": _list(*_LISTING, *_CREATED),
    "DeleteModel": {"ModelName": honoured("the model deleted")},
    "CreateEndpointConfig": {
        "EndpointConfigName": honoured("the endpoint configuration's name"),
        "ProductionVariants": honoured("the variants an endpoint runs"),
        **_variant("ProductionVariants[]"),
        "DataCaptureConfig": honoured(
            "InvokeEndpoint's invocations are copied to S3 as JSON lines in SageMaker's capture "
            "format, in batches off the invocation path (capture/, docs/data-capture.md)"
        ),
        "DataCaptureConfig.EnableCapture": honoured(
            "false keeps the config but captures nothing (CaptureStatus Stopped)"
        ),
        "DataCaptureConfig.InitialSamplingPercentage": honoured(
            "the share of invocations captured, drawn per invocation"
        ),
        "DataCaptureConfig.DestinationS3Uri": honoured(
            "records go to <DestinationS3Uri>/<EndpointName>/<VariantName>/yyyy/mm/dd/hh/"
            "<file>.jsonl, written as the variant's model role (an s3:// URL)"
        ),
        "DataCaptureConfig.KmsKeyId": echoed(
            "records are written as the bucket's default encryption says: the server holds no "
            "KMS key to encrypt them with"
        ),
        "DataCaptureConfig.CaptureOptions": honoured("what of each invocation is captured"),
        "DataCaptureConfig.CaptureOptions[].CaptureMode": honoured(
            "Input (the request: endpointInput), Output (the answer: endpointOutput), or "
            "InputAndOutput"
        ),
        "DataCaptureConfig.CaptureContentTypeHeader": honoured(
            "content types captured as text; any other is captured base64 (BASE64)"
        ),
        "DataCaptureConfig.CaptureContentTypeHeader.CsvContentTypes": honoured(
            "captured as text with encoding CSV"
        ),
        "DataCaptureConfig.CaptureContentTypeHeader.JsonContentTypes": honoured(
            "captured as text with encoding JSON"
        ),
        **_TAGS,
        "KmsKeyId": echoed(
            "it encrypts the ML storage volume of each instance, and no such volume exists "
            "here: model data and logs sit in the server's state dir, encrypted as the host's "
            "disk is"
        ),
        "AsyncInferenceConfig": honoured(
            "the endpoint takes only InvokeEndpointAsync: requests wait in the server's durable "
            "queue (asyncinf/) and their answers are written to S3"
        ),
        "AsyncInferenceConfig.ClientConfig": honoured("how the queue calls the containers"),
        "AsyncInferenceConfig.ClientConfig.MaxConcurrentInvocationsPerInstance": honoured(
            "queued requests in flight per instance at most (1 when not given)"
        ),
        "AsyncInferenceConfig.OutputConfig": honoured("where answers and failures go"),
        "AsyncInferenceConfig.OutputConfig.S3OutputPath": honoured(
            "answers are written to <S3OutputPath>/<InferenceId>.out with the container's "
            "content type"
        ),
        "AsyncInferenceConfig.OutputConfig.S3FailurePath": honoured(
            "failures are written to <S3FailurePath>/<InferenceId>-error.out (below "
            "S3OutputPath when not given)"
        ),
        "AsyncInferenceConfig.OutputConfig.KmsKeyId": echoed(
            "answers are written as the bucket's default encryption says"
        ),
        "AsyncInferenceConfig.OutputConfig.NotificationConfig": honoured(
            "SNS notifications of asynchronous answers, published with boto3's SNS client "
            "(AWS_ENDPOINT_URL_SNS) once the answer or failure is in S3"
        ),
        "AsyncInferenceConfig.OutputConfig.NotificationConfig.SuccessTopic": honoured(
            "a Completed notification, with the fields AWS documents, after each answer"
        ),
        "AsyncInferenceConfig.OutputConfig.NotificationConfig.ErrorTopic": honoured(
            "a Failed notification, with the failure's reason, after each failure"
        ),
        "AsyncInferenceConfig.OutputConfig.NotificationConfig.IncludeInferenceResponseIn": (
            honoured(
                "the answer (or failure text) inline in that topic's notifications, base64, "
                "when at most 128 KB"
            )
        ),
        "ExplainerConfig": refused("SageMaker Clarify online explainability"),
        "ShadowProductionVariants": honoured(
            "a shadow variant runs beside the production one and gets a copy of each of its "
            "requests, off the caller's path; its answers are dropped (router/shadow.py)"
        ),
        **{
            member: entry
            for member, entry in _variant("ShadowProductionVariants[]").items()
            if not member.startswith("ShadowProductionVariants[].ServerlessConfig")
        },
        "ShadowProductionVariants[].ServerlessConfig": refused("serverless shadow variants"),
        "ExecutionRoleArn": honoured(
            "the role of inference components whose Specification has an inline Container "
            "(a component of a model gets the model's ExecutionRoleArn)"
        ),
        "VpcConfig": _VPC,
        "EnableNetworkIsolation": _NETWORK_ISOLATION,
        "MetricsConfig": refused("enhanced metrics"),
        "TracingConfig": refused("request tracing"),
        "CrossRegionTrafficConfig": refused("cross-region traffic"),
    },
    "DescribeEndpointConfig": {
        "EndpointConfigName": honoured("the endpoint configuration described"),
    },
    "ListEndpointConfigs": _list(*_LISTING, *_CREATED),
    "DeleteEndpointConfig": {"EndpointConfigName": honoured("the configuration deleted")},
    "CreateEndpoint": {
        "EndpointName": honoured("the endpoint's name"),
        "EndpointConfigName": honoured("the configuration deployed"),
        "DeploymentConfig": _CREATE_DEPLOYMENT_CONFIG,
        **_TAGS,
    },
    "DescribeEndpoint": {"EndpointName": honoured("the endpoint described")},
    "ListEndpoints": _list(
        *_LISTING, *_CREATED, "LastModifiedTimeBefore", "LastModifiedTimeAfter", "StatusEquals"
    ),
    "UpdateEndpoint": {
        "EndpointName": honoured("the endpoint updated"),
        "EndpointConfigName": honoured("the configuration it moves to, blue/green"),
        "RetainAllVariantProperties": refused(
            "retaining variant properties across an update (the new configuration's instance "
            "counts and weights apply, whatever UpdateEndpointWeightsAndCapacities set)",
            accepts=(False,),
        ),
        "ExcludeRetainedVariantProperties": refused("retaining variant properties"),
        **_UPDATE_DEPLOYMENT_CONFIG,
        "RetainDeploymentConfig": honoured(
            "true: without a DeploymentConfig, the last one given (LastDeploymentConfig) applies"
        ),
    },
    "UpdateEndpointWeightsAndCapacities": {
        "EndpointName": honoured("the endpoint changed in place (InService, hosting models)"),
        "DesiredWeightsAndCapacities": honoured("the variants changed, each once"),
        "DesiredWeightsAndCapacities[].VariantName": honoured("one of the endpoint's variants"),
        "DesiredWeightsAndCapacities[].DesiredWeight": honoured(
            "the variant's share of the endpoint's traffic, republished without a restart"
        ),
        "DesiredWeightsAndCapacities[].DesiredInstanceCount": honoured(
            "instances added beside the running ones and routed to once they pass /ping, or "
            "removed: routed around, drained, stopped; the others keep running (at least 1)"
        ),
        "DesiredWeightsAndCapacities[].ServerlessUpdateConfig": honoured(
            "a serverless variant's MaxConcurrency and ProvisionedConcurrency changed in place "
            "(its gate; a container starts at once for a new ProvisionedConcurrency)"
        ),
        "DesiredWeightsAndCapacities[].ServerlessUpdateConfig.MaxConcurrency": honoured(
            "invocations in flight past which the variant throttles"
        ),
        "DesiredWeightsAndCapacities[].ServerlessUpdateConfig.ProvisionedConcurrency": honoured(
            "keeps the variant's one instance warm (at most MaxConcurrency)"
        ),
    },
    "DeleteEndpoint": {"EndpointName": honoured("the endpoint deleted")},
    "CreateInferenceComponent": {
        "InferenceComponentName": honoured("the component's name"),
        "EndpointName": honoured("the endpoint whose instances run its copies"),
        "VariantName": honoured("the variant whose instances run its copies"),
        **_COMPONENT_SPECIFICATION,
        **_TAGS,
    },
    "DescribeInferenceComponent": {
        "InferenceComponentName": honoured("the component described"),
    },
    "ListInferenceComponents": {
        **_list(
            *_LISTING,
            *_CREATED,
            "LastModifiedTimeBefore",
            "LastModifiedTimeAfter",
            "StatusEquals",
        ),
        "EndpointNameEquals": honoured("components of that endpoint"),
        "VariantNameEquals": honoured("components of that variant"),
    },
    "UpdateInferenceComponent": {
        "InferenceComponentName": honoured("the component updated"),
        **_COMPONENT_SPECIFICATION,
        "DeploymentConfig": honoured("how this update replaces the copies"),
        "DeploymentConfig.RollingUpdatePolicy": honoured(
            "copies replaced in batches: new ones started and routed to beside the old, then "
            "a batch of old ones drained and stopped (without it, every new copy starts "
            "beside the old ones and traffic moves once they all answer)"
        ),
        "DeploymentConfig.RollingUpdatePolicy.MaximumBatchSize": honoured(
            "the copies replaced at a time: COPY_COUNT, or CAPACITY_PERCENT of the copies"
        ),
        "DeploymentConfig.RollingUpdatePolicy.MaximumBatchSize.Type": honoured(
            "COPY_COUNT or CAPACITY_PERCENT"
        ),
        "DeploymentConfig.RollingUpdatePolicy.MaximumBatchSize.Value": honoured("the size"),
        "DeploymentConfig.RollingUpdatePolicy.WaitIntervalInSeconds": honoured(
            "the wait between batches"
        ),
        "DeploymentConfig.RollingUpdatePolicy.MaximumExecutionTimeoutInSeconds": honoured(
            "past it the update is rolled back"
        ),
        "DeploymentConfig.RollingUpdatePolicy.RollbackMaximumBatchSize": refused(
            "rollback in batches (a rollback starts every removed copy again at once)"
        ),
        "DeploymentConfig.AutoRollbackConfiguration": refused(
            "rollback on CloudWatch alarms (a rollback happens when new copies fail to start)"
        ),
    },
    "UpdateInferenceComponentRuntimeConfig": {
        "InferenceComponentName": honoured("the component scaled"),
        "DesiredRuntimeConfig": honoured("the copies wanted"),
        "DesiredRuntimeConfig.CopyCount": honoured("how many copies run (0 allowed)"),
    },
    "DeleteInferenceComponent": {
        "InferenceComponentName": honoured("the component deleted, its copies drained"),
    },
    "AddTags": {
        "ResourceArn": honoured(
            "a model, endpoint configuration, endpoint or inference component of this server"
        ),
        **_TAGS,
    },
    "ListTags": {
        "ResourceArn": honoured(
            "a model, endpoint configuration, endpoint or inference component of this server"
        ),
        "NextToken": honoured("continues the listing where the previous page ended"),
        "MaxResults": honoured("the page's size"),
    },
    "DeleteTags": {
        "ResourceArn": honoured(
            "a model, endpoint configuration, endpoint or inference component of this server"
        ),
        "TagKeys": honoured("the tags removed"),
    },
}


def refuse_unsupported(
    operation: str, params: Mapping[str, object], have: frozenset[str] = frozenset()
) -> None:
    """Raise SageMaker's ValidationException when `params` uses a member polyhost refuses."""
    found = refusals(SUPPORT.get(operation, {}), params, have)
    if found:
        raise ValidationException(refusal_message(operation, found))


# -- the docs ------------------------------------------------------------------------------------

DOC = Path("docs") / "supported-members.md"

_HEADER = """# Members polyhost honours, echoes or refuses

Generated from the tables in the code (`control/support.py`, `metrics/cloudwatch_api.py`,
`logs/api.py`, `autoscaling/support.py`) by `python -m polyhost.control.support --write`; a test
walks botocore's models and fails when a member of an operation polyhost serves has no entry,
or when this page is not what the tables say. Why and what to do instead:
[unsupported.md](unsupported.md).

- **honoured**: the operation does what the member asks.
- **echoed**: accepted, stored and shown by Describe, because on one machine it means nothing
  (the reason is given).
- **refused**: a request that gives it answers a ValidationException (CloudWatch:
  InvalidParameterValue; CloudWatch Logs: InvalidParameterException) naming the member:
  `polyhost does not support ExplainerConfig (SageMaker Clarify online explainability) yet:
  remove it from CreateEndpointConfig, or see docs/unsupported.md`; the table's "why" names
  the feature. Values listed as honoured pass. Absent, null, an empty list, an empty map and an
  empty structure mean what leaving the member out means, and pass.

A member under an echoed or refused one is covered by it and not listed. Paths: `[]` after a
list, `{}` after a map. Members a client sends that botocore's model does not know are dropped
before the operation runs, as AWS does for forward compatibility.
"""


def render(schemas: Mapping[str, Schema] | None = None) -> str:
    """The whole of docs/supported-members.md."""
    loaded = dict(schemas or {})
    services = (
        ("SageMaker", "sagemaker", SUPPORT),
        ("CloudWatch", "cloudwatch", CLOUDWATCH_SUPPORT),
        ("CloudWatch Logs", "logs", LOGS_SUPPORT),
        ("Application Auto Scaling", "application-autoscaling", AUTOSCALING_SUPPORT),
    )
    parts = [_HEADER]
    summary = ["| service | honoured | echoed | refused |", "| --- | --- | --- | --- |"]
    sections: list[str] = []
    for title, service, table in services:
        schema = loaded.get(service) or load_schema(service, table)
        total = counts(table)
        summary.append(
            f"| {title} | {total['honoured']} | {total['echoed']} | {total['refused']} |"
        )
        sections.append(render_table(title, schema, table, CAPABILITIES))
    parts.append("\n".join(summary) + "\n")
    parts += sections
    return "\n".join(parts).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    """`--write`: (re)write docs/supported-members.md under the current folder; else print."""
    text = render()
    if argv[1:] == ["--write"]:
        DOC.write_text(text, encoding="utf-8")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
