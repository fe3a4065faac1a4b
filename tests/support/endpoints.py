"""Helpers to create models/configs/endpoints with boto3 and wait for them, as users do."""

from __future__ import annotations

import time
from typing import Any

from tests.support.server import ECHO_IMAGE


def echo_container(hostname: str | None, **environment: str) -> dict[str, Any]:
    container: dict[str, Any] = {
        "Image": ECHO_IMAGE,
        "Environment": {"ECHO_NAME": hostname or "echo", **environment},
    }
    if hostname is not None:
        container["ContainerHostname"] = hostname
    return container


def create_model(
    sagemaker: Any, name: str, containers: list[dict[str, Any]], mode: str | None = None
) -> None:
    kwargs: dict[str, Any] = {
        "ModelName": name,
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/polyhost",
    }
    if len(containers) == 1 and mode is None:
        kwargs["PrimaryContainer"] = containers[0]
    else:
        kwargs["Containers"] = containers
    if mode is not None:
        kwargs["InferenceExecutionConfig"] = {"Mode": mode}
    sagemaker.create_model(**kwargs)


def create_config(
    sagemaker: Any, name: str, variants: list[tuple[str, str, int, float]], **extra: Any
) -> None:
    """variants: (variant name, model name, instance count, weight)."""
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": model,
                "InitialInstanceCount": count,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": weight,
                **extra,
            }
            for variant, model, count, weight in variants
        ],
    )


def wait_status(sagemaker: Any, name: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll DescribeEndpoint until it leaves Creating/Updating; returns the description."""
    deadline = time.monotonic() + timeout
    while True:
        description: dict[str, Any] = sagemaker.describe_endpoint(EndpointName=name)
        if description["EndpointStatus"] not in ("Creating", "Updating"):
            return description
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} still {description['EndpointStatus']} after {timeout}s")
        time.sleep(0.05)


def deploy(
    sagemaker: Any,
    name: str,
    containers: list[dict[str, Any]],
    mode: str | None = None,
    instances: int = 1,
    **variant_extra: Any,
) -> dict[str, Any]:
    """Model + config + endpoint named `name`, one variant AllTraffic; waits and returns."""
    create_model(sagemaker, name, containers, mode)
    create_config(sagemaker, name, [("AllTraffic", name, instances, 1.0)], **variant_extra)
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return wait_status(sagemaker, name)


def invoke(runtime: Any, name: str, body: bytes, **kwargs: Any) -> tuple[bytes, dict[str, Any]]:
    answer = runtime.invoke_endpoint(EndpointName=name, Body=body, **kwargs)
    return answer["Body"].read(), answer
