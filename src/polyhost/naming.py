"""SageMaker's names for polyhost's resources: ARNs, log groups and log streams.

One place for each convention, because the router (ModelError's LogStreamArn), the deployer
(where a container's log lives) and the log readers must agree on every character.
"""

from __future__ import annotations

LOG_GROUP_PREFIX = "/aws/sagemaker/Endpoints/"


def resource_arn(region: str, account_id: str, kind: str, name: str) -> str:
    """SageMaker ARN of a resource; the name part is lowercased as SageMaker does."""
    return f"arn:aws:sagemaker:{region}:{account_id}:{kind}/{name.lower()}"


def log_group(endpoint_name: str) -> str:
    """The CloudWatch log group of an endpoint's containers."""
    return LOG_GROUP_PREFIX + endpoint_name


def log_group_arn(region: str, account_id: str, endpoint_name: str) -> str:
    return f"arn:aws:logs:{region}:{account_id}:log-group:{log_group(endpoint_name)}"


def log_stream(variant_name: str, instance_id: str, hostname: str) -> str:
    """A container's log stream, `{variant}/{instance}/{hostname}` as SageMaker names it."""
    return f"{variant_name}/{instance_id}/{hostname}"
