"""Reading SageMaker resources where "not there" is an answer, not an error.

boto3 signals a missing model, endpoint config or endpoint by a ValidationException
("Could not find ..."); these helpers turn that into `None` so callers can branch on it, and
let every other error through. Application Auto Scaling's targets and policies are read here
too, every page of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from polyhost.client.connection import Connection
from polyhost.client.errors import is_not_found

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient


def _or_none(call: Callable[[], Any]) -> dict[str, Any] | None:
    try:
        return dict(call())
    except ClientError as error:
        if is_not_found(error):
            return None
        raise


def describe_model(sm: SageMakerClient, name: str) -> dict[str, Any] | None:
    return _or_none(lambda: sm.describe_model(ModelName=name))


def describe_config(sm: SageMakerClient, name: str) -> dict[str, Any] | None:
    return _or_none(lambda: sm.describe_endpoint_config(EndpointConfigName=name))


def describe_endpoint(sm: SageMakerClient, name: str) -> dict[str, Any] | None:
    return _or_none(lambda: sm.describe_endpoint(EndpointName=name))


def describe_component(sm: SageMakerClient, name: str) -> dict[str, Any] | None:
    return _or_none(lambda: sm.describe_inference_component(InferenceComponentName=name))


def _every(list_call: Callable[..., Any], key: str) -> Iterator[dict[str, Any]]:
    """Every item a List* operation gives under `key`, oldest first, following NextToken."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"SortBy": "CreationTime", "SortOrder": "Ascending"}
        kwargs["MaxResults"] = 100
        if token:
            kwargs["NextToken"] = token
        page = list_call(**kwargs)
        for summary in page.get(key, []):
            yield dict(summary)
        token = page.get("NextToken")
        if not token:
            return


def list_components(sm: SageMakerClient) -> Iterator[dict[str, Any]]:
    """Every inference component, oldest first."""
    return _every(sm.list_inference_components, "InferenceComponents")


def list_endpoints(sm: SageMakerClient) -> Iterator[dict[str, Any]]:
    """Every endpoint, oldest first."""
    return _every(sm.list_endpoints, "Endpoints")


SCALING_NAMESPACE = "sagemaker"


def autoscaling_client(sm: SageMakerClient) -> Any:
    """An `application-autoscaling` client for the server `sm` talks to.

    Built from `sm`'s endpoint URL through `Connection.resolve`, so it is signed with the same
    region and credentials as every other call of the command.
    """
    return Connection.resolve(sm.meta.endpoint_url).autoscaling()


def _paged(call: Callable[..., Any], key: str) -> Iterator[dict[str, Any]]:
    """Every item an Application Auto Scaling Describe* gives under `key`, following NextToken."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"ServiceNamespace": SCALING_NAMESPACE, "MaxResults": 50}
        if token:
            kwargs["NextToken"] = token
        page = call(**kwargs)
        for item in page.get(key, []):
            yield dict(item)
        token = page.get("NextToken")
        if not token:
            return


def scalable_targets(scaling: Any) -> list[dict[str, Any]]:
    """Every SageMaker scalable target (DescribeScalableTargets, every page)."""
    return list(_paged(scaling.describe_scalable_targets, "ScalableTargets"))


def scaling_policies(scaling: Any) -> list[dict[str, Any]]:
    """Every SageMaker scaling policy (DescribeScalingPolicies, every page)."""
    return list(_paged(scaling.describe_scaling_policies, "ScalingPolicies"))
