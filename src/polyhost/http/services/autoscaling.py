"""Application Auto Scaling on `POST /` with `X-Amz-Target: AnyScaleFrontendService.<Op>`: AWS
JSON 1.1's adapter (http/aws/json_protocol.py) over `AutoscalingService`
(autoscaling/service.py).

So `boto3.client("application-autoscaling", endpoint_url=...)` scales polyhost's variants and
inference components as it would SageMaker's. What is this service's own: its target prefix,
its body cap and its words for a body nested too deep.
"""

from __future__ import annotations

from polyhost.autoscaling.service import AutoscalingService
from polyhost.http.aws.json_protocol import AwsJsonAdapter, JsonService

AUTOSCALING_TARGET = "AnyScaleFrontendService"  # the service part of X-Amz-Target
AUTOSCALING_SERVICE = JsonService(
    "Application Auto Scaling",
    AUTOSCALING_TARGET + ".",
    "no Application Auto Scaling request needs that many. Send the members the operation defines.",
)
# Far above any request of these operations (fifty step adjustments, fifty tags).
MAX_BODY_BYTES = 256 * 1024


def autoscaling_adapter(
    service: AutoscalingService, max_body_bytes: int = MAX_BODY_BYTES
) -> AwsJsonAdapter:
    return AwsJsonAdapter(AUTOSCALING_SERVICE, lambda: service.call, max_body_bytes)
