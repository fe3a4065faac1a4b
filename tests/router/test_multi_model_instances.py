"""Multi-model endpoints with several instances, and a MultiModel container in a Serial
pipeline, end to end: a real server, a bring-your-own multi-model container that says which
process answered (tests/support/containers/forgetful_models.py), models on a local S3, boto3.

With two instances each model is loaded on one of them and its calls keep going there, so the
endpoint holds each model once, not once per instance; a hot model (calls piling up on its
instance) is loaded on the other one too. In a pipeline, every hop runs and TargetModel reaches
the MultiModel hop."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import deploy, echo_container
from tests.support.s3 import MotoS3, s3_server  # noqa: F401  (fixture)
from tests.support.server import PolyhostProcess, ServerFactory, write_image_config

IMAGE = "polyhost-test/forgetful-models:1"
MODELS = 8


def _archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("weights.bin")
        info.size = 7
        archive.addfile(info, io.BytesIO(b"weights"))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def prefix(s3_server: MotoS3) -> str:  # noqa: F811
    bucket = s3_server.new_bucket()
    for index in range(MODELS):
        s3_server.put(bucket, f"m/model{index}.tar.gz", _archive())
    s3_server.put(bucket, "m/hot.tar.gz", _archive())
    return f"s3://{bucket}/m/"


@pytest.fixture(scope="module")
def server(s3_server: MotoS3, start_server: ServerFactory) -> PolyhostProcess:  # noqa: F811
    def images(path: Path) -> Path:
        write_image_config(path)  # the echo container, for the pipeline's other hops
        program = Path(__file__).parents[1] / "support" / "containers" / "forgetful_models.py"
        with path.open("a", encoding="utf-8") as config:
            config.write(
                f'[images."{IMAGE}"]\ncommand = ["{sys.executable}", "{program}"]\n'
                "multi_models = true\n"
            )
        return path

    return start_server(name="mme-instances", images=images, env=s3_server.env())


def _mme(prefix: str, hostname: str | None = None) -> dict[str, Any]:
    container = {"Image": IMAGE, "Mode": "MultiModel", "ModelDataUrl": prefix}
    if hostname is not None:
        container["ContainerHostname"] = hostname
    return container


def _invoke(runtime: Any, endpoint: str, target: str, body: bytes = b"x") -> dict[str, Any]:
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint, Body=body, ContentType="text/plain", TargetModel=target
    )
    document: dict[str, Any] = json.loads(answer["Body"].read())
    return document


def _loaded_per_container(server: PolyhostProcess, endpoint: str) -> list[int]:
    with urllib.request.urlopen(server.admin_url + "/api/containers", timeout=30) as answer:
        containers = json.loads(answer.read())["containers"]
    return sorted(int(c["loaded_models"]) for c in containers if c["endpoint"] == endpoint)


def test_each_model_is_loaded_on_one_instance_and_its_calls_stay_there(
    server: PolyhostProcess, sagemaker: Any, runtime: Any, prefix: str
) -> None:
    described = deploy(sagemaker, "mme-two", [_mme(prefix)], instances=2)
    assert described["EndpointStatus"] == "InService"
    answered_by: dict[str, set[int]] = {}
    for _ in range(3):
        for index in range(MODELS):
            target = f"model{index}.tar.gz"
            answer = _invoke(runtime, "mme-two", target)
            assert answer["model"] == target and answer["loads"] == 1, answer
            answered_by.setdefault(target, set()).add(answer["pid"])
    # Every model answered by one process, three times: placed once, never reloaded elsewhere.
    assert all(len(pids) == 1 for pids in answered_by.values()), answered_by
    loaded = _loaded_per_container(server, "mme-two")
    assert len(loaded) == 2 and sum(loaded) == MODELS, loaded  # not MODELS on each instance


def test_a_hot_model_spreads_to_the_other_instance(
    sagemaker: Any, runtime: Any, prefix: str, server: PolyhostProcess
) -> None:
    described = deploy(sagemaker, "mme-hot", [_mme(prefix)], instances=2)
    assert described["EndpointStatus"] == "InService"
    first = _invoke(runtime, "mme-hot", "hot.tar.gz")["pid"]
    # Eight slow calls at once: its instance has two in flight, the rest go to the other one,
    # which loads the model too.
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: _invoke(runtime, "mme-hot", "hot.tar.gz", b"sleep:0.5"), range(8))
        )
    pids = {answer["pid"] for answer in answers}
    assert first in pids and len(pids) == 2, answers
    assert _loaded_per_container(server, "mme-hot") == [1, 1]


def test_a_pipeline_runs_every_hop_and_target_model_reaches_its_multi_model_hop(
    sagemaker: Any, runtime: Any, prefix: str
) -> None:
    containers = [echo_container("pre"), _mme(prefix, "models"), echo_container("post")]
    assert deploy(sagemaker, "mme-pipe", containers)["EndpointStatus"] == "InService"
    answer = runtime.invoke_endpoint(
        EndpointName="mme-pipe", Body=b"row", ContentType="text/plain", TargetModel="model1.tar.gz"
    )
    body = answer["Body"].read().decode()
    # post's prefix on the model's answer, whose input was pre's answer to the caller's body.
    assert body.startswith("post:"), body
    document = json.loads(body.removeprefix("post:"))
    assert document["model"] == "model1.tar.gz"
    assert document["body"] == "pre:row"
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(EndpointName="mme-pipe", Body=b"row", ContentType="text/plain")
    error = caught.value.response
    assert error["Error"]["Code"] == "ValidationError"
    assert "TargetModel is required" in error["Error"]["Message"]
