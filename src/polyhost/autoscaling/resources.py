"""What can be scaled here, and the ARNs Application Auto Scaling gives what it keeps.

Two scalable targets, as SageMaker offers them: an endpoint's production variant
(`endpoint/<endpoint>/variant/<variant>`, `sagemaker:variant:DesiredInstanceCount`) and an
inference component (`inference-component/<name>`,
`sagemaker:inference-component:DesiredCopyCount`). Anything else is refused, saying which
forms there are: a target that could be registered but never scaled would be worse than an
error.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from polyhost.errors import ValidationException

NAMESPACE = "sagemaker"
VARIANT_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
COMPONENT_DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
FORMS = (
    f"endpoint/<EndpointName>/variant/<VariantName> with {VARIANT_DIMENSION}, or "
    f"inference-component/<InferenceComponentName> with {COMPONENT_DIMENSION}"
)


@dataclass(frozen=True, slots=True)
class Resource:
    """A scalable resource: a variant (`variant` set) or an inference component."""

    resource_id: str
    dimension: str
    name: str  # the endpoint's or the component's
    variant: str | None = None

    @property
    def is_component(self) -> bool:
        return self.variant is None

    @property
    def unit(self) -> str:
        return "copy count" if self.is_component else "instance count"


def check_namespace(namespace: str) -> None:
    if namespace != NAMESPACE:
        raise ValidationException(
            f"ServiceNamespace {namespace!r} is not served here: polyhost scales SageMaker "
            f"resources only; use ServiceNamespace 'sagemaker' ({FORMS})."
        )


def parse_resource(resource_id: str, dimension: str) -> Resource:
    """The resource `resource_id` names, checked against its dimension; ValidationException
    naming the forms polyhost scales otherwise."""
    parts = resource_id.split("/")
    if len(parts) == 4 and parts[0] == "endpoint" and parts[2] == "variant" and all(parts):
        resource = Resource(resource_id, VARIANT_DIMENSION, parts[1], parts[3])
    elif len(parts) == 2 and parts[0] == "inference-component" and parts[1]:
        resource = Resource(resource_id, COMPONENT_DIMENSION, parts[1])
    else:
        raise ValidationException(
            f"Unsupported ResourceId {resource_id[:200]!r}: polyhost scales {FORMS}."
        )
    if dimension != resource.dimension:
        raise ValidationException(
            f"Unsupported scalable dimension {dimension!r} for ResourceId "
            f"{resource_id[:200]!r}: use {resource.dimension}."
        )
    return resource


def target_arn(region: str, account_id: str) -> str:
    """A new scalable target's ARN: AWS names it by an opaque id."""
    return (
        f"arn:aws:application-autoscaling:{region}:{account_id}:scalable-target/"
        f"{uuid.uuid4().hex[:4]}{uuid.uuid4().hex}"
    )


def policy_arn(region: str, account_id: str, resource_id: str, name: str) -> str:
    return (
        f"arn:aws:autoscaling:{region}:{account_id}:scalingPolicy:{uuid.uuid4()}:"
        f"resource/{NAMESPACE}/{resource_id}:policyName/{name}"
    )


def scheduled_action_arn(region: str, account_id: str, resource_id: str, name: str) -> str:
    return (
        f"arn:aws:autoscaling:{region}:{account_id}:scheduledAction:{uuid.uuid4()}:"
        f"resource/{NAMESPACE}/{resource_id}:scheduledActionName/{name}"
    )
