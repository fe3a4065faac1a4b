"""SageMaker's names for polyhost's resources: ARNs, log groups and log streams.

One place for each convention, because the router (ModelError's LogStreamArn), the deployer
(where a container's log lives) and the log readers must agree on every character.
"""

from __future__ import annotations

LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"
COMPONENT_LOG_GROUP_PREFIX = "/aws/sagemaker/InferenceComponents/"
# The key an inference component's copies are deployed and routed under: no endpoint name can
# have it, since SageMaker's endpoint names have no underscore.
COMPONENT_KEY_PREFIX = "ic_"


def component_key(component_name: str) -> str:
    """The deployer's and router's key of an inference component's copies."""
    return COMPONENT_KEY_PREFIX + component_name.lower()


def is_component_key(key: str) -> bool:
    return key.startswith(COMPONENT_KEY_PREFIX)


def resource_arn(region: str, account_id: str, kind: str, name: str) -> str:
    """SageMaker ARN of a resource; the name part is lowercased as SageMaker does."""
    return f"arn:aws:sagemaker:{region}:{account_id}:{kind}/{name.lower()}"


def log_group(endpoint_name: str) -> str:
    """The CloudWatch log group of an endpoint's containers; for an inference component's
    deployment key, the component's group, as SageMaker names it."""
    if is_component_key(endpoint_name):
        return COMPONENT_LOG_GROUP_PREFIX + endpoint_name[len(COMPONENT_KEY_PREFIX) :]
    return LOG_GROUP_PREFIX + endpoint_name


def log_group_key(group: str) -> str:
    """The deployment key whose containers a log group holds ("" for no such group)."""
    if group.startswith(LOG_GROUP_PREFIX):
        return group[len(LOG_GROUP_PREFIX) :]
    if group.startswith(COMPONENT_LOG_GROUP_PREFIX):
        name = group[len(COMPONENT_LOG_GROUP_PREFIX) :]
        return component_key(name) if name else ""
    return ""


def log_group_arn(region: str, account_id: str, endpoint_name: str) -> str:
    return f"arn:aws:logs:{region}:{account_id}:log-group:{log_group(endpoint_name)}"


def log_stream(variant_name: str, instance_id: str, hostname: str) -> str:
    """A container's log stream, `{variant}/{instance}/{hostname}` as SageMaker names it."""
    return f"{variant_name}/{instance_id}/{hostname}"
