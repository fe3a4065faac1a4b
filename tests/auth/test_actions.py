"""Wire operations map to SageMaker's IAM actions and (lowercased) resource ARNs."""

from __future__ import annotations

import pytest

from polyhost.auth.actions import (
    Target,
    cloudwatch_target,
    control_plane_target,
    invoke_endpoint_target,
    logs_target,
)
from tests.auth.helpers import ACCOUNT, REGION

ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
LOGS = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:"


@pytest.mark.parametrize(
    ("operation", "params", "resource"),
    [
        ("CreateModel", {"ModelName": "My-Model"}, f"{ARN}:model/my-model"),
        ("DescribeModel", {"ModelName": "m"}, f"{ARN}:model/m"),
        ("DeleteModel", {"ModelName": "M"}, f"{ARN}:model/m"),
        ("CreateEndpointConfig", {"EndpointConfigName": "Cfg"}, f"{ARN}:endpoint-config/cfg"),
        ("DescribeEndpointConfig", {"EndpointConfigName": "c"}, f"{ARN}:endpoint-config/c"),
        ("DeleteEndpointConfig", {"EndpointConfigName": "c"}, f"{ARN}:endpoint-config/c"),
        (
            "CreateEndpoint",
            {"EndpointName": "My-Endpoint", "EndpointConfigName": "c"},
            f"{ARN}:endpoint/my-endpoint",
        ),
        ("DescribeEndpoint", {"EndpointName": "E"}, f"{ARN}:endpoint/e"),
        ("UpdateEndpoint", {"EndpointName": "E", "EndpointConfigName": "c2"}, f"{ARN}:endpoint/e"),
        ("UpdateEndpointWeightsAndCapacities", {"EndpointName": "E"}, f"{ARN}:endpoint/e"),
        ("DeleteEndpoint", {"EndpointName": "E"}, f"{ARN}:endpoint/e"),
        ("ListModels", {"NameContains": "x"}, "*"),
        ("ListEndpointConfigs", {}, "*"),
        ("ListEndpoints", {}, "*"),
        ("AddTags", {"ResourceArn": f"{ARN}:endpoint/e", "Tags": []}, f"{ARN}:endpoint/e"),
        ("ListTags", {"ResourceArn": f"{ARN}:model/m"}, f"{ARN}:model/m"),
        (
            "DeleteTags",
            {"ResourceArn": f"{ARN}:endpoint-config/c", "TagKeys": []},
            f"{ARN}:endpoint-config/c",
        ),
        ("ListTags", {}, "*"),
        # The control plane finds ep1 for any case of its ARN: the ARN authorised is ep1's.
        ("AddTags", {"ResourceArn": f"{ARN}:endpoint/EP1", "Tags": []}, f"{ARN}:endpoint/ep1"),
        (
            "ListTags",
            {"ResourceArn": f"ARN:AWS:SAGEMAKER:{REGION.upper()}:{ACCOUNT}:Model/M"},
            f"{ARN}:model/m",
        ),
        (
            "DeleteTags",
            {"ResourceArn": f"{ARN}:endpoint-config/C", "TagKeys": []},
            f"{ARN}:endpoint-config/c",
        ),
        ("DescribeModel", {}, f"{ARN}:model/"),
        ("DescribeModel", {"ModelName": 7}, f"{ARN}:model/"),
        ("SomethingElse", {"EndpointName": "e"}, "*"),
    ],
)
def test_control_plane_operations(operation: str, params: dict[str, object], resource: str) -> None:
    target = control_plane_target(operation, params, region=REGION, account_id=ACCOUNT)
    assert target == Target(f"sagemaker:{operation}", resource)


def test_invoke_endpoint_acts_on_the_lowercased_endpoint_arn() -> None:
    target = invoke_endpoint_target("My-Endpoint", region=REGION, account_id=ACCOUNT)
    assert target == Target("sagemaker:InvokeEndpoint", f"{ARN}:endpoint/my-endpoint")
    streamed = invoke_endpoint_target(
        "e", region=REGION, account_id=ACCOUNT, operation="InvokeEndpointWithResponseStream"
    )
    assert streamed.action == "sagemaker:InvokeEndpointWithResponseStream"
    with pytest.raises(ValueError):
        invoke_endpoint_target("e", region=REGION, account_id=ACCOUNT, operation="DeleteEndpoint")


def test_cloudwatch_reads_act_on_everything() -> None:
    assert cloudwatch_target("GetMetricData") == Target("cloudwatch:GetMetricData", "*")


@pytest.mark.parametrize(
    ("operation", "params", "resource"),
    [
        (
            "GetLogEvents",
            {"logGroupName": "/aws/sagemaker/Endpoints/E", "logStreamName": "s"},
            LOGS + "/aws/sagemaker/Endpoints/E",
        ),
        (
            "FilterLogEvents",
            {"logGroupIdentifier": "/aws/sagemaker/Endpoints/E"},
            LOGS + "/aws/sagemaker/Endpoints/E",
        ),
        ("GetLogEvents", {"logGroupIdentifier": LOGS + "/g"}, LOGS + "/g"),
        ("DescribeLogStreams", {"logGroupName": "/g"}, LOGS + "/g"),
        ("DescribeLogGroups", {"logGroupNamePrefix": "/aws"}, "*"),
    ],
)
def test_logs_reads_act_on_the_log_group(
    operation: str, params: dict[str, object], resource: str
) -> None:
    target = logs_target(operation, params, region=REGION, account_id=ACCOUNT)
    assert target == Target(f"logs:{operation}", resource)
