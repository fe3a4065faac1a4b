"""Shadow variants (ShadowProductionVariants) end to end: a real server, echo and faulty
containers, boto3.

The caller always gets the production variant's answer; the shadow gets a copy of each request
and counts it as its own invocation; a shadow that hangs or breaks costs the caller nothing but
its own error counts; Describe lists the shadow apart; TargetVariant cannot reach it; and
SageMaker's rules on the configuration are kept."""

from __future__ import annotations

import urllib.request
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.endpoints import create_model, echo_container, wait_status
from tests.support.server import FAULTY_IMAGE, REGION, PolyhostProcess
from tests.support.waiting import eventually


def _variant(name: str, model: str) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": model,
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
    }


def _deploy_with_shadow(sagemaker: Any, name: str, shadow: dict[str, Any]) -> dict[str, Any]:
    create_model(sagemaker, f"{name}-prod", [echo_container(None, ECHO_NAME="prod")])
    create_model(sagemaker, f"{name}-shadow", [shadow])
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[_variant("prod", f"{name}-prod")],
        ShadowProductionVariants=[_variant("shadow", f"{name}-shadow")],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return wait_status(sagemaker, name)


def _series(server: PolyhostProcess, name: str, endpoint: str, variant: str) -> float:
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=30) as answer:
        lines = answer.read().decode().splitlines()
    wanted = (f'endpoint_name="{endpoint}"', f'variant_name="{variant}"')
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith(name + "{") and all(label in line for label in wanted)
    )


def _invoke(runtime: Any, endpoint: str, body: bytes, **extra: Any) -> tuple[bytes, str]:
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint, Body=body, ContentType="text/plain", **extra
    )
    return answer["Body"].read(), answer["InvokedProductionVariant"]


def test_the_caller_gets_production_and_the_shadow_a_copy_of_each_request(
    server: PolyhostProcess, sagemaker: Any, runtime: Any
) -> None:
    described = _deploy_with_shadow(sagemaker, "shadowed", echo_container(None, ECHO_NAME="shadow"))
    assert described["EndpointStatus"] == "InService"
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["prod"]
    (shadow,) = described["ShadowProductionVariants"]
    assert shadow["VariantName"] == "shadow" and shadow["CurrentInstanceCount"] == 1
    for index in range(20):
        assert _invoke(runtime, "shadowed", f"r{index}".encode()) == (
            f"prod:r{index}".encode(),
            "prod",
        )
    # TargetVariant may name the production variant (the shadow still gets its copy) ...
    assert _invoke(runtime, "shadowed", b"t", TargetVariant="prod") == (b"prod:t", "prod")
    eventually(
        lambda: _series(server, "polyhost_invocations_total", "shadowed", "shadow") == 21,
        "the shadow to have served a copy of each request",
    )
    assert _series(server, "polyhost_invocations_total", "shadowed", "prod") == 21
    # ... but not the shadow, which no request is routed to.
    with pytest.raises(ClientError) as caught:
        _invoke(runtime, "shadowed", b"x", TargetVariant="shadow")
    error = caught.value.response
    assert error["Error"]["Code"] == "ValidationError"
    assert "TargetVariant must be one of [prod]" in error["Error"]["Message"]


@pytest.mark.parametrize("fault", ["hang", "close-mid-response"])
def test_a_hanging_or_broken_shadow_costs_the_caller_nothing(
    server: PolyhostProcess, sagemaker: Any, fault: str
) -> None:
    name = f"shadow-{fault}"
    faulty = {"Image": FAULTY_IMAGE, "Environment": {"FAULT": fault}}
    assert _deploy_with_shadow(sagemaker, name, faulty)["EndpointStatus"] == "InService"
    # A short read timeout: an answer held back by the shadow would fail the call.
    quick = boto3.client(
        "sagemaker-runtime",
        endpoint_url=server.url,
        region_name=REGION,
        config=Config(read_timeout=5, retries={"max_attempts": 1}),
    )
    for index in range(10):
        assert _invoke(quick, name, f"r{index}".encode()) == (f"prod:r{index}".encode(), "prod")
    assert _series(server, "polyhost_invocations_total", name, "shadow") == 10
    if fault == "close-mid-response":
        eventually(
            lambda: _series(server, "polyhost_invocation_5xx_errors_total", name, "shadow") == 10,
            "the shadow's failures to be counted as its own",
        )
    assert _series(server, "polyhost_invocation_5xx_errors_total", name, "prod") == 0


def _config_error(sagemaker: Any, **config: Any) -> str:
    with pytest.raises(ClientError) as caught:
        sagemaker.create_endpoint_config(EndpointConfigName="shadow-bad", **config)
    error = caught.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
        "ValidationException",
        400,
    )
    return str(error["Error"]["Message"])


def test_the_configuration_is_held_to_sagemakers_rules(sagemaker: Any) -> None:
    create_model(sagemaker, "shadow-rules", [echo_container(None)])
    one = _variant("a", "shadow-rules")
    message = _config_error(
        sagemaker,
        ProductionVariants=[one, _variant("b", "shadow-rules")],
        ShadowProductionVariants=[_variant("s", "shadow-rules")],
    )
    assert "one production variant and one shadow variant (this one has 2 and 1)" in message
    message = _config_error(
        sagemaker,
        ProductionVariants=[one],
        ShadowProductionVariants=[_variant("A", "shadow-rules")],
    )
    assert "VariantName 'a' is used by more than one variant" in message
    message = _config_error(
        sagemaker,
        ProductionVariants=[one],
        ShadowProductionVariants=[_variant("s", "shadow-rules")],
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "s3://bucket/out"}},
    )
    assert "ShadowProductionVariants cannot be combined with AsyncInferenceConfig" in message
    message = _config_error(
        sagemaker,
        ProductionVariants=[one],
        ShadowProductionVariants=[_variant("s", "no-such-model")],
    )
    assert "no-such-model" in message
