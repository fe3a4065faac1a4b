"""Which IAM action and resource ARN a request asks for, as SageMaker's IAM reference names them.

The adapters call these before running an operation, so a policy written for SageMaker
(`sagemaker:InvokeEndpoint` on `arn:aws:sagemaker:REGION:ACCOUNT:endpoint/NAME`) means the same
here. SageMaker lowercases the name in every ARN it makes, and so do these: a policy scoping a
principal to `endpoint/my-endpoint` covers an endpoint created as `My-Endpoint`, and a policy
naming `endpoint/My-Endpoint` covers nothing (ARNs compare case-sensitively).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from polyhost.naming import resource_arn


@dataclass(frozen=True, slots=True)
class Target:
    """An IAM action and the resource it acts on (`*` for actions without a resource)."""

    action: str
    resource: str


ANY_RESOURCE = "*"

# Operation -> (ARN resource type, the request member naming the resource).
CONTROL_PLANE_RESOURCES: dict[str, tuple[str, str]] = {
    "CreateModel": ("model", "ModelName"),
    "DescribeModel": ("model", "ModelName"),
    "DeleteModel": ("model", "ModelName"),
    "CreateEndpointConfig": ("endpoint-config", "EndpointConfigName"),
    "DescribeEndpointConfig": ("endpoint-config", "EndpointConfigName"),
    "DeleteEndpointConfig": ("endpoint-config", "EndpointConfigName"),
    "CreateEndpoint": ("endpoint", "EndpointName"),
    "DescribeEndpoint": ("endpoint", "EndpointName"),
    "UpdateEndpoint": ("endpoint", "EndpointName"),
    "UpdateEndpointWeightsAndCapacities": ("endpoint", "EndpointName"),
    "DeleteEndpoint": ("endpoint", "EndpointName"),
    "CreateInferenceComponent": ("inference-component", "InferenceComponentName"),
    "DescribeInferenceComponent": ("inference-component", "InferenceComponentName"),
    "UpdateInferenceComponent": ("inference-component", "InferenceComponentName"),
    "UpdateInferenceComponentRuntimeConfig": ("inference-component", "InferenceComponentName"),
    "DeleteInferenceComponent": ("inference-component", "InferenceComponentName"),
}
# The tag operations act on whatever resource their ResourceArn names (lowercased: see
# `tagged_resource`).
TAG_OPERATIONS = frozenset({"AddTags", "DeleteTags", "ListTags"})
INVOKE_WITH_RESPONSE_STREAM = "InvokeEndpointWithResponseStream"
RUNTIME_OPERATIONS = frozenset(
    {"InvokeEndpoint", "InvokeEndpointAsync", INVOKE_WITH_RESPONSE_STREAM}
)
# The runtime's routes, `POST /endpoints/{name}/<route>`, and the operation (so the action,
# `sagemaker:<operation>`) each asks for.
RUNTIME_ROUTES: dict[str, str] = {
    "invocations": "InvokeEndpoint",
    "invocations-response-stream": INVOKE_WITH_RESPONSE_STREAM,
    "async-invocations": "InvokeEndpointAsync",
}


def unknown_runtime_action(action: str) -> str | None:
    """Why `action`, spelt as a SageMaker runtime action without wildcards, names none (a
    misspelt action in a policy or a check matches nothing, silently); None when it is fine."""
    service, _, name = action.partition(":")
    if service.lower() != "sagemaker" or not name.lower().startswith("invoke"):
        return None
    if "*" in name or "?" in name:
        return None
    if name.lower() in {operation.lower() for operation in RUNTIME_OPERATIONS}:
        return None
    known = ", ".join(f"sagemaker:{operation}" for operation in sorted(RUNTIME_OPERATIONS))
    return f"{action} is not a SageMaker runtime action; the runtime's actions are {known}"


def control_plane_target(
    operation: str, params: Mapping[str, object], *, region: str, account_id: str
) -> Target:
    """`sagemaker:<Operation>` on the resource the request names.

    List operations (and any operation without a resource) act on `*`, as in IAM, where only
    `"Resource": "*"` grants them. A missing or non-string name yields the type's ARN with an
    empty name: the request fails validation after authorization anyway.
    """
    action = f"sagemaker:{operation}"
    if operation in TAG_OPERATIONS:
        arn = params.get("ResourceArn")
        return Target(
            action, tagged_resource(arn) if isinstance(arn, str) and arn else ANY_RESOURCE
        )
    known = CONTROL_PLANE_RESOURCES.get(operation)
    if known is None:
        return Target(action, ANY_RESOURCE)
    kind, member = known
    name = params.get(member)
    return Target(
        action, resource_arn(region, account_id, kind, name if isinstance(name, str) else "")
    )


def tagged_resource(arn: str) -> str:
    """The resource a tag operation's `ResourceArn` acts on: the ARN lowercased.

    The control plane finds the resource whatever the case of the ARN sent (names ignore case,
    and the ARN is compared lowercased), and every ARN SageMaker makes is lowercase. So the
    lowercased ARN is the ARN of the resource found, and a policy on `endpoint/ep1` covers
    `endpoint/EP1` as it covers the request that finds ep1. Authorising the ARN as sent let
    `.../EP1` past a Deny on `.../ep1` and tag ep1.
    """
    return arn.lower()


def invoke_endpoint_target(
    endpoint_name: str, *, region: str, account_id: str, operation: str = "InvokeEndpoint"
) -> Target:
    """`sagemaker:<operation>` on the endpoint's (lowercased) ARN: InvokeEndpoint, or
    InvokeEndpointWithResponseStream for `/invocations-response-stream`, an action of its own
    as in IAM (a policy allowing only `sagemaker:InvokeEndpoint` does not allow streaming;
    `sagemaker:InvokeEndpoint*` allows both)."""
    if operation not in RUNTIME_OPERATIONS:
        raise ValueError(f"{operation!r} is not a SageMaker runtime operation")
    return Target(
        f"sagemaker:{operation}", resource_arn(region, account_id, "endpoint", endpoint_name)
    )


def cloudwatch_target(operation: str) -> Target:
    """CloudWatch's metric reads have no resource-level permissions: `cloudwatch:<Op>` on `*`."""
    return Target(f"cloudwatch:{operation}", ANY_RESOURCE)


def log_group_arn(region: str, account_id: str, log_group: str) -> str:
    return f"arn:aws:logs:{region}:{account_id}:log-group:{log_group}"


def logs_target(
    operation: str, params: Mapping[str, object], *, region: str, account_id: str
) -> Target:
    """`logs:<Op>` on the log group the request names (`logGroupName`, or a
    `logGroupIdentifier` that is a name or an ARN), else on `*` (DescribeLogGroups)."""
    action = f"logs:{operation}"
    identifier = params.get("logGroupIdentifier")
    if isinstance(identifier, str) and identifier.startswith("arn:"):
        return Target(action, identifier)
    group = params.get("logGroupName")
    if not (isinstance(group, str) and group):
        group = identifier
    if isinstance(group, str) and group:
        return Target(action, log_group_arn(region, account_id, group))
    return Target(action, ANY_RESOURCE)


def autoscaling_target(operation: str, params: Mapping[str, object]) -> Target:
    """`application-autoscaling:<Op>`: on the scalable target's ARN for the tag operations
    (ResourceARN), on `*` for the rest, as Application Auto Scaling's IAM reference has it (its
    other actions support no resource-level permissions)."""
    arn = params.get("ResourceARN")
    resource = arn if isinstance(arn, str) and arn.startswith("arn:") else ANY_RESOURCE
    return Target(f"application-autoscaling:{operation}", resource)
