"""The warm lane of multi-model endpoints (router/warm_models.py), end to end: a real server, a
bring-your-own multi-model container that can be made to forget its models, boto3.

A loaded model's calls take the fast lane and answer as the coroutine path would: counted once
as an invocation and a cache hit, a refusal is the model's ModelError, and a model the container
lost (404) is loaded again and answered, with nothing counted twice."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import deploy
from tests.support.s3 import MotoS3, s3_server  # noqa: F401  (fixture)
from tests.support.server import PolyhostProcess, ServerFactory

IMAGE = "polyhost-test/forgetful-models:1"
ENDPOINT = "mme-warm"


def _archive() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = b"weights"
        info = tarfile.TarInfo("weights.bin")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(s3_server: MotoS3, start_server: ServerFactory) -> PolyhostProcess:  # noqa: F811
    def images(path: Path) -> Path:
        program = Path(__file__).parents[1] / "support" / "containers" / "forgetful_models.py"
        path.write_text(
            f'[images."{IMAGE}"]\ncommand = ["{sys.executable}", "{program}"]\n'
            "multi_models = true\n",
            encoding="utf-8",
        )
        return path

    own = start_server(name="mme-warm", images=images, env=s3_server.env())
    bucket = s3_server.new_bucket()
    for name in ("a", "b"):
        s3_server.put(bucket, f"m/{name}.tar.gz", _archive())
    container = {"Image": IMAGE, "Mode": "MultiModel", "ModelDataUrl": f"s3://{bucket}/m/"}
    assert deploy(own.sagemaker(), ENDPOINT, [container])["EndpointStatus"] == "InService"
    return own


def _invoke(server: PolyhostProcess, target: str, body: bytes = b"x") -> dict[str, Any]:
    answer = server.runtime().invoke_endpoint(
        EndpointName=ENDPOINT, Body=body, ContentType="text/plain", TargetModel=target
    )
    document: dict[str, Any] = json.loads(answer["Body"].read())
    document.pop("pid")  # one instance here: which process answered is not the point
    return document


def _series(server: PolyhostProcess, name: str) -> float:
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=30) as answer:
        lines = answer.read().decode().splitlines()
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith(name + "{") and f'endpoint_name="{ENDPOINT}"' in line
    ]
    assert values, f"no {name} series for {ENDPOINT}"
    return sum(values)


def test_warm_calls_answer_and_count_once(server: PolyhostProcess) -> None:
    assert _invoke(server, "a.tar.gz")["loads"] == 1  # the first call loads
    invocations = _series(server, "polyhost_invocations_total")
    hits = _series(server, "polyhost_model_cache_hits_total")
    for index in range(20):
        answer = _invoke(server, "a.tar.gz", f"call {index}".encode())
        assert answer == {"model": "a.tar.gz", "loads": 1, "body": f"call {index}"}
    assert _series(server, "polyhost_invocations_total") == invocations + 20
    assert _series(server, "polyhost_model_cache_hits_total") == hits + 20


def test_a_warm_models_refusal_is_its_model_error(server: PolyhostProcess) -> None:
    _invoke(server, "a.tar.gz")
    errors = _series(server, "polyhost_invocation_4xx_errors_total")
    with pytest.raises(ClientError) as caught:
        _invoke(server, "a.tar.gz", b"fail")
    error: Any = caught.value.response
    assert error["Error"]["Code"] == "ModelError", error
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    assert error["OriginalStatusCode"] == 400
    assert "from model a.tar.gz in" in error["Error"]["Message"]
    assert "this model refuses that input" in error["Error"]["Message"]
    assert _series(server, "polyhost_invocation_4xx_errors_total") == errors + 1


def test_a_model_the_container_lost_is_loaded_again_and_answered(
    server: PolyhostProcess,
) -> None:
    loads = _invoke(server, "b.tar.gz")["loads"]
    _invoke(server, "b.tar.gz", b"forget")  # the container drops every model it holds
    invocations = _series(server, "polyhost_invocations_total")
    misses = _series(server, "polyhost_model_cache_misses_total")
    hits = _series(server, "polyhost_model_cache_hits_total")
    # The warm lane sends it, gets the container's 404, and hands it to the load path.
    assert _invoke(server, "b.tar.gz", b"again") == {
        "model": "b.tar.gz",
        "loads": loads + 1,
        "body": "again",
    }
    assert _series(server, "polyhost_invocations_total") == invocations + 1
    # One invocation, one count: a miss (it waited for a load), not a hit as well.
    assert _series(server, "polyhost_model_cache_misses_total") == misses + 1
    assert _series(server, "polyhost_model_cache_hits_total") == hits
    assert _invoke(server, "b.tar.gz")["loads"] == loads + 1  # warm again
