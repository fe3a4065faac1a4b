"""The boto3 part of SageMaker's multi-container walkthrough, pointed at polyhost.

The calls are the ones of SageMaker's "multi-container endpoint with direct invocation" notebook
(create_model with a PyTorch and a TensorFlow container in Direct mode, create_endpoint_config,
create_endpoint, wait, invoke each container by its hostname); the only change is
`endpoint_url=` on the clients. Nothing here imports polyhost.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any

import boto3
import data
import numpy as np
from botocore.config import Config
from botocore.exceptions import ClientError

MODEL_NAME = "mnist-multi-container"
ENDPOINT_CONFIG_NAME = "mnist-multi-container-ep-config"
ENDPOINT_NAME = "mnist-multi-container-ep"
PYTORCH_HOSTNAME = "pytorch-mnist"
TENSORFLOW_HOSTNAME = "tensorflow-mnist"
PYTORCH_IMAGE = "polyhost/pytorch"
TENSORFLOW_IMAGE = "polyhost/tensorflow"
# SageMaker wants a role; polyhost records it and assumes nothing.
ROLE = "arn:aws:iam::123456789012:role/polyhost-example"
REGION = "us-east-1"


def use_local_credentials() -> None:
    """botocore signs every request and needs *some* keys; polyhost does not check them."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "polyhost")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "polyhost")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)


def clients(url: str) -> tuple[Any, Any]:
    """`sm_client` and `runtime_sm_client` of the notebook, at polyhost's URL."""
    use_local_credentials()
    sm_client = boto3.client("sagemaker", endpoint_url=url, region_name=REGION)
    runtime_sm_client = boto3.client(
        "sagemaker-runtime",
        endpoint_url=url,
        region_name=REGION,
        # One attempt: a timed-out request is reported, not silently sent again.
        config=Config(retries={"max_attempts": 1}, read_timeout=120),
    )
    return sm_client, runtime_sm_client


def delete_if_present(sm_client: Any) -> None:
    """The notebook's clean-up, run first so the walkthrough can be repeated."""
    try:
        sm_client.delete_endpoint(EndpointName=ENDPOINT_NAME)
        sm_client.get_waiter("endpoint_deleted").wait(
            EndpointName=ENDPOINT_NAME, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
        )
    except ClientError:
        pass  # not there
    for call, kwargs in (
        (sm_client.delete_endpoint_config, {"EndpointConfigName": ENDPOINT_CONFIG_NAME}),
        (sm_client.delete_model, {"ModelName": MODEL_NAME}),
    ):
        with contextlib.suppress(ClientError):  # not there
            call(**kwargs)


def deploy(sm_client: Any, tf_mnist_model_data: str, pt_updated_model_uri: str) -> dict[str, Any]:
    """create_model (Direct) → create_endpoint_config → create_endpoint → wait for InService."""
    tensorflow_container = {
        "ContainerHostname": TENSORFLOW_HOSTNAME,
        "Image": TENSORFLOW_IMAGE,
        "ModelDataUrl": tf_mnist_model_data,
    }
    pytorch_container = {
        "ContainerHostname": PYTORCH_HOSTNAME,
        "Image": PYTORCH_IMAGE,
        "ModelDataUrl": pt_updated_model_uri,
        "Environment": {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": pt_updated_model_uri,
        },
    }
    sm_client.create_model(
        ModelName=MODEL_NAME,
        Containers=[pytorch_container, tensorflow_container],
        InferenceExecutionConfig={"Mode": "Direct"},
        ExecutionRoleArn=ROLE,
    )
    sm_client.create_endpoint_config(
        EndpointConfigName=ENDPOINT_CONFIG_NAME,
        ProductionVariants=[
            {
                "VariantName": "prod",
                "ModelName": MODEL_NAME,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.c5.4xlarge",
            },
        ],
    )
    sm_client.create_endpoint(EndpointName=ENDPOINT_NAME, EndpointConfigName=ENDPOINT_CONFIG_NAME)
    # The waiter's default is a poll every 30 s: SageMaker takes minutes, polyhost seconds.
    sm_client.get_waiter("endpoint_in_service").wait(
        EndpointName=ENDPOINT_NAME, WaiterConfig={"Delay": 1, "MaxAttempts": 600}
    )
    description: dict[str, Any] = sm_client.describe_endpoint(EndpointName=ENDPOINT_NAME)
    return description


def _payload(values: np.ndarray) -> list[Any]:
    """Four decimals are plenty for standardised pixels and keep the JSON body small."""
    rounded: list[Any] = np.round(values, 4).tolist()
    return rounded


def tensorflow_request(images: np.ndarray) -> bytes:
    """TF Serving's row format: `{"instances": N x 28 x 28 x 1}`."""
    return json.dumps({"instances": _payload(data.normalize(images)[..., None])}).encode()


def pytorch_request(images: np.ndarray) -> bytes:
    """The inference script's format: `{"inputs": N x 1 x 28 x 28}`."""
    return json.dumps({"inputs": _payload(data.normalize(images)[:, None])}).encode()


def invoke(runtime_sm_client: Any, hostname: str, body: bytes) -> np.ndarray:
    """One direct invocation; the answer as an N x 10 array of scores."""
    result = runtime_sm_client.invoke_endpoint(
        EndpointName=ENDPOINT_NAME,
        ContentType="application/json",
        Accept="application/json",
        TargetContainerHostname=hostname,
        Body=body,
    )
    answer = json.loads(result["Body"].read())
    if hostname == TENSORFLOW_HOSTNAME:
        answer = answer["predictions"]
    return np.asarray(answer, dtype=np.float32)


REQUEST_BUILDERS = {TENSORFLOW_HOSTNAME: tensorflow_request, PYTORCH_HOSTNAME: pytorch_request}


@dataclass(frozen=True)
class Evaluation:
    hostname: str
    accuracy: float
    images: int
    batch_size: int
    batch_latencies_ms: list[float]
    single_latencies_ms: list[float]

    @staticmethod
    def _median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    @staticmethod
    def _p90(values: list[float]) -> float:
        if len(values) < 2:
            return values[0] if values else float("nan")
        return statistics.quantiles(values, n=10)[-1]

    def summary(self) -> str:
        batch, single = self.batch_latencies_ms, self.single_latencies_ms
        return (
            f"{self.hostname:<17} accuracy {self.accuracy:6.2%} on {self.images} held-out images"
            f" | {self.batch_size}-image request: median {self._median(batch):.1f} ms"
            f" | 1-image request: median {self._median(single):.1f} ms,"
            f" p90 {self._p90(single):.1f} ms"
        )


def evaluate(
    runtime_sm_client: Any,
    hostname: str,
    test: data.Split,
    *,
    batch_size: int = 100,
    single_requests: int = 20,
) -> Evaluation:
    """Accuracy over `test` in batches, plus the latency of batched and one-image requests."""
    build = REQUEST_BUILDERS[hostname]
    correct = 0
    batch_latencies: list[float] = []
    for start in range(0, len(test.labels), batch_size):
        images = test.images[start : start + batch_size]
        body = build(images)
        started = time.perf_counter()
        scores = invoke(runtime_sm_client, hostname, body)
        batch_latencies.append((time.perf_counter() - started) * 1000)
        if scores.shape != (len(images), 10):
            raise RuntimeError(f"{hostname} answered shape {scores.shape}, not ({len(images)}, 10)")
        correct += int((scores.argmax(axis=1) == test.labels[start : start + batch_size]).sum())
    single_latencies: list[float] = []
    for index in range(min(single_requests, len(test.labels))):
        body = build(test.images[index : index + 1])
        started = time.perf_counter()
        invoke(runtime_sm_client, hostname, body)
        single_latencies.append((time.perf_counter() - started) * 1000)
    return Evaluation(
        hostname=hostname,
        accuracy=correct / max(1, len(test.labels)),
        images=len(test.labels),
        batch_size=batch_size,
        batch_latencies_ms=batch_latencies,
        single_latencies_ms=single_latencies,
    )
