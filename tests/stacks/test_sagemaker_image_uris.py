"""The guide's own container definitions, unchanged, through a real server: SageMaker's image
URIs for TensorFlow 2.3.1 and PyTorch 1.8.1 on a Direct multi-container endpoint, driven with
boto3, served by the built-in stacks (which say in their logs which versions serve them)."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import torch
from botocore.exceptions import ClientError

from tests.support.server import REGION, PolyhostProcess, ServerFactory

pytestmark = pytest.mark.slow

DLC = "763104351884.dkr.ecr.us-east-1.amazonaws.com"
TENSORFLOW_IMAGE = f"{DLC}/tensorflow-inference:2.3.1-cpu"
PYTORCH_IMAGE = f"{DLC}/pytorch-inference:1.8.1-cpu-py36"
ENDPOINT = "guide-multi-container"

# y = 2x over rows of 3: small enough to save in a second, real enough to be served.
BUILD_SAVED_MODEL = """
import sys
import tensorflow as tf

class Double(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def serve(self, x):
        return {"y": x * 2.0}

module = Double()
tf.saved_model.save(module, sys.argv[1], signatures={"serving_default": module.serve})
"""


def _tarball(folder: Path, archive: Path) -> str:
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return f"file://{archive}"


@pytest.fixture(scope="module")
def model_urls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    base = tmp_path_factory.mktemp("guide-models")
    tensorflow = base / "tensorflow"
    build = subprocess.Popen(
        [sys.executable, "-c", BUILD_SAVED_MODEL, str(tensorflow / "model" / "1")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )
    pytorch = base / "pytorch"
    pytorch.mkdir()
    linear = torch.nn.Linear(3, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, -1.0]]))
        linear.bias.zero_()
    torch.jit.script(linear).save(str(pytorch / "model.pt"))
    output, _ = build.communicate(timeout=180)
    assert build.returncode == 0, output.decode(errors="replace")
    return {
        "tensorflow": _tarball(tensorflow, base / "tensorflow.tar.gz"),
        "pytorch": _tarball(pytorch, base / "pytorch.tar.gz"),
    }


@pytest.fixture(scope="module")
def endpoint(
    start_server: ServerFactory, model_urls: dict[str, str]
) -> tuple[PolyhostProcess, Any]:
    """The guide's create_model (Direct), config and endpoint, with its image URIs as written."""
    server = start_server(name="polyhost-guide-uris", images=False)
    sagemaker = server.sagemaker()
    sagemaker.create_model(
        ModelName="guide-multi",
        Containers=[
            {
                "ContainerHostname": "pytorch-mnist",
                "Image": PYTORCH_IMAGE,
                "ModelDataUrl": model_urls["pytorch"],
            },
            {
                "ContainerHostname": "tensorflow-mnist",
                "Image": TENSORFLOW_IMAGE,
                "ModelDataUrl": model_urls["tensorflow"],
            },
        ],
        InferenceExecutionConfig={"Mode": "Direct"},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/guide",
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName="guide-multi-config",
        ProductionVariants=[
            {
                "VariantName": "prod",
                "ModelName": "guide-multi",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.c5.4xlarge",
            }
        ],
    )
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="guide-multi-config")
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName=ENDPOINT, WaiterConfig={"Delay": 1, "MaxAttempts": 240}
    )
    return server, sagemaker


def _invoke(server: PolyhostProcess, hostname: str, document: Any) -> Any:
    answer = server.runtime().invoke_endpoint(
        EndpointName=ENDPOINT,
        TargetContainerHostname=hostname,
        ContentType="application/json",
        Body=json.dumps(document),
    )
    return json.loads(answer["Body"].read())


def test_the_guides_image_uris_serve_on_the_builtin_stacks(
    endpoint: tuple[PolyhostProcess, Any],
) -> None:
    server, sagemaker = endpoint
    model = sagemaker.describe_model(ModelName="guide-multi")
    assert [c["Image"] for c in model["Containers"]] == [PYTORCH_IMAGE, TENSORFLOW_IMAGE]
    rows = [[1.0, 2.0, 3.0], [0.5, 0.0, -0.5]]
    tensorflow = _invoke(server, "tensorflow-mnist", {"instances": rows})
    assert tensorflow == {"predictions": [[2.0, 4.0, 6.0], [1.0, 0.0, -1.0]]}
    pytorch = _invoke(server, "pytorch-mnist", rows)
    assert np.allclose(pytorch, [[6.0, -2.0], [0.0, 1.0]])


def test_each_container_log_says_which_version_serves_its_image(
    endpoint: tuple[PolyhostProcess, Any],
) -> None:
    server, _ = endpoint
    logs = boto3.client("logs", endpoint_url=server.url, region_name=REGION)
    expected = {
        "tensorflow-mnist": f"image {TENSORFLOW_IMAGE} names TensorFlow 2.3.1; TensorFlow ",
        "pytorch-mnist": f"image {PYTORCH_IMAGE} names PyTorch 1.8.1; PyTorch {torch.__version__}",
    }
    deadline = time.monotonic() + 30
    while True:
        events = logs.filter_log_events(logGroupName=f"/aws/sagemaker/Endpoints/{ENDPOINT}")
        found = {
            hostname: [
                e["message"]
                for e in events["events"]
                if e["logStreamName"].endswith("/" + hostname) and text in e["message"]
            ]
            for hostname, text in expected.items()
        }
        if all(found.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for hostname, lines in found.items():
        assert len(lines) == 1, (hostname, [e["message"] for e in events["events"]])
        assert lines[0].endswith(" serves it"), lines


def test_a_gpu_uri_of_the_guide_is_refused_as_cpu_only(
    endpoint: tuple[PolyhostProcess, Any],
) -> None:
    _, sagemaker = endpoint
    with pytest.raises(ClientError) as raised:
        sagemaker.create_model(
            ModelName="guide-gpu",
            PrimaryContainer={"Image": f"{DLC}/tensorflow-inference:2.3.1-gpu"},
        )
    error = raised.value.response["Error"]
    assert error["Code"] == "ValidationException"
    assert "polyhost runs CPU stacks only" in error["Message"]
    assert f"{DLC}/tensorflow-inference:2.3.1-cpu" in error["Message"]
