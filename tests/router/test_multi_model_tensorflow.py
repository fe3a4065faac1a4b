"""A multi-model endpoint on `polyhost/tensorflow`, end to end: a real server, two tiny
SavedModels under one S3 prefix (a local S3 server), boto3's InvokeEndpoint with TargetModel.
Each model answers its own, the first call loads and later ones are warm, a model whose
`code/inference.py` posts to TensorFlow Serving's REST API works behind TargetModel too, and
a TargetModel with nothing behind it is the caller's error while the rest keep serving."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.stacks.tf_models import REST_HANDLER, archive, build_linear, expected
from tests.support.endpoints import deploy
from tests.support.s3 import MotoS3, s3_server  # noqa: F401  (fixture)
from tests.support.server import PolyhostProcess, ServerFactory

pytest.importorskip("tensorflow")

ROWS = [3.0, -1.0]
MODELS: dict[str, tuple[float, float, str | None]] = {
    "tf/a.tar.gz": (2.0, 1.0, None),
    "tf/b.tar.gz": (-0.5, 4.0, None),
    "tf/handled.tar.gz": (8.0, 0.0, REST_HANDLER),
}


@pytest.fixture(scope="module")
def prefix(s3_server: MotoS3, tmp_path_factory: pytest.TempPathFactory) -> str:  # noqa: F811
    base = tmp_path_factory.mktemp("tf-models")
    bucket = s3_server.new_bucket()
    for index, (name, (scale, shift, script)) in enumerate(MODELS.items()):
        folder: Path = build_linear(base / str(index), scale, shift, script)
        s3_server.put(bucket, f"models/{name}", archive(folder))
    return f"s3://{bucket}/models/"


@pytest.fixture(scope="module")
def server(s3_server: MotoS3, start_server: ServerFactory) -> PolyhostProcess:  # noqa: F811
    # The first load imports TensorFlow: room for it before a 429.
    return start_server("--model-load-wait", "120", name="mme-tf", env=s3_server.env())


@pytest.fixture(scope="module")
def endpoint(sagemaker: Any, prefix: str) -> str:
    container = {"Image": "polyhost/tensorflow", "Mode": "MultiModel", "ModelDataUrl": prefix}
    assert deploy(sagemaker, "mme-tf", [container])["EndpointStatus"] == "InService"
    return "mme-tf"


def _invoke(runtime: Any, endpoint: str, target: str) -> Any:
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint,
        Body=json.dumps({"instances": ROWS}),
        ContentType="application/json",
        TargetModel=target,
    )
    return json.loads(answer["Body"].read())


def test_each_target_model_answers_its_own(
    server: PolyhostProcess, runtime: Any, endpoint: str
) -> None:
    for _ in range(2):
        for name in ("tf/a.tar.gz", "tf/b.tar.gz"):
            scale, shift, _ = MODELS[name]
            assert _invoke(runtime, endpoint, name) == {"predictions": expected(scale, shift, ROWS)}
    log = server.log()
    for name in ("tf/a.tar.gz", "tf/b.tar.gz"):
        assert log.count(f"model {name} loaded into container") == 1, log[-4000:]


def test_a_handler_model_behind_target_model(runtime: Any, endpoint: str) -> None:
    scale, shift, _ = MODELS["tf/handled.tar.gz"]
    answer = _invoke(runtime, endpoint, "tf/handled.tar.gz")
    assert answer["predictions"] == expected(scale, shift, ROWS)
    assert answer["via"].endswith("/v1/models/model:predict")


def test_a_missing_model_is_the_callers_error(runtime: Any, endpoint: str) -> None:
    with pytest.raises(ClientError) as caught:
        _invoke(runtime, endpoint, "tf/nothing.tar.gz")
    error = caught.value.response
    assert error["Error"]["Code"] == "ValidationError"
    assert "/models/tf/nothing.tar.gz" in error["Error"]["Message"]
    scale, shift, _ = MODELS["tf/a.tar.gz"]
    assert _invoke(runtime, endpoint, "tf/a.tar.gz") == {
        "predictions": expected(scale, shift, ROWS)
    }
