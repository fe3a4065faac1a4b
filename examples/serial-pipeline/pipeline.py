"""The boto3 calls of a Serial inference pipeline, as SageMaker's `PipelineModel.deploy()` makes.

One model with three `Containers` and neither `ContainerHostname`s nor an
`InferenceExecutionConfig`: that is a Serial pipeline. A request goes to the first container,
each answer becomes the next container's request, and the last answer returns to the caller.
The containers' `Environment` is what the SageMaker Python SDK sets for a scikit-learn model
whose script is in the archive's `code/` folder. Nothing here imports polyhost.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

PIPELINE_NAME = "digits-pipeline"
SKLEARN_IMAGE = "polyhost/sklearn"
ROLE = "arn:aws:iam::123456789012:role/polyhost-example"
REGION = "us-east-1"


def pipeline_clients(url: str) -> tuple[Any, Any]:
    """SageMaker control-plane and runtime clients for polyhost at `url`."""
    # botocore signs every request and needs *some* keys; polyhost does not check them.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "polyhost")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "polyhost")
    sagemaker = boto3.client("sagemaker", endpoint_url=url, region_name=REGION)
    runtime = boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )
    return sagemaker, runtime


def _script_env(intermediate: bool) -> dict[str, str]:
    env = {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "SAGEMAKER_REGION": REGION,
    }
    if intermediate:
        # The client's Accept reaches only the last container; the others answer this type.
        env["SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT"] = "text/csv"
    return env


def containers(preprocess_url: str, model_url: str, postprocess_url: str) -> list[dict[str, Any]]:
    """The three ContainerDefinitions, in pipeline order, without ContainerHostname."""
    model_env = {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv"}  # default handlers
    pre_env, post_env = _script_env(intermediate=True), _script_env(intermediate=False)
    return [
        {"Image": SKLEARN_IMAGE, "ModelDataUrl": preprocess_url, "Environment": pre_env},
        {"Image": SKLEARN_IMAGE, "ModelDataUrl": model_url, "Environment": model_env},
        {"Image": SKLEARN_IMAGE, "ModelDataUrl": postprocess_url, "Environment": post_env},
    ]


def remove(sagemaker: Any, name: str = PIPELINE_NAME) -> None:
    """Delete the endpoint, its config and the model when they exist (so a rerun starts clean)."""
    try:
        sagemaker.delete_endpoint(EndpointName=name)
        sagemaker.get_waiter("endpoint_deleted").wait(
            EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
    except ClientError:
        pass  # there was none
    with contextlib.suppress(ClientError):
        sagemaker.delete_endpoint_config(EndpointConfigName=name)
    with contextlib.suppress(ClientError):
        sagemaker.delete_model(ModelName=name)


def deploy(sagemaker: Any, pipeline: list[dict[str, Any]], name: str = PIPELINE_NAME) -> str:
    """CreateModel (Serial) → CreateEndpointConfig → CreateEndpoint → wait; returns the status."""
    sagemaker.create_model(ModelName=name, ExecutionRoleArn=ROLE, Containers=pipeline)
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": 1,
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name, Tags=[])
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 600}
    )
    status: str = sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"]
    return status


def predict(runtime: Any, csv_rows: str, name: str = PIPELINE_NAME) -> tuple[list[str], float]:
    """Send CSV rows through the pipeline; the label names and the request's latency in ms."""
    started = time.perf_counter()
    answer = runtime.invoke_endpoint(
        EndpointName=name, ContentType="text/csv", Accept="application/json", Body=csv_rows
    )
    body = answer["Body"].read()
    elapsed_ms = (time.perf_counter() - started) * 1000
    names: list[str] = json.loads(body)
    return names, elapsed_ms
