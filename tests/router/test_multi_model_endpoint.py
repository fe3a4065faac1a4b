"""Multi-model endpoints end to end: a real server, sklearn models under one S3 prefix (a local
S3 server), boto3. Many models answer right, the first call loads and later ones are warm,
concurrent first calls load once, a memory budget evicts the least recently used, and every
error is the caller's or the model's as SageMaker words it."""

from __future__ import annotations

import io
import json
import tarfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import joblib
import numpy as np
import pytest
from botocore.exceptions import ClientError
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from tests.support.endpoints import deploy
from tests.support.s3 import MotoS3, s3_server  # noqa: F401  (fixture)
from tests.support.server import PolyhostProcess, ServerFactory

MODELS = 6
PADDING = 16 * 1024 * 1024


def _archive(estimator: Any, script: str | None = None) -> bytes:
    buffer = io.BytesIO()
    joblib_bytes = io.BytesIO()
    joblib.dump(estimator, joblib_bytes)
    files = {"model.joblib": joblib_bytes.getvalue()}
    if script is not None:
        files["code/inference.py"] = script.encode()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def rows() -> list[list[float]]:
    rows: list[list[float]] = load_digits().data[1500:1504].astype(np.float32).tolist()
    return rows


@pytest.fixture(scope="module")
def prefix(s3_server: MotoS3, rows: list[list[float]]) -> tuple[str, dict[str, list[int]]]:  # noqa: F811
    """s3://bucket/models/ with MODELS small models, padded ones and a broken one."""
    data = load_digits()
    x, y = data.data.astype(np.float32), data.target
    bucket = s3_server.new_bucket()
    expected: dict[str, list[int]] = {}
    for index in range(MODELS):
        # Each model sees other digits, so each answers differently.
        keep = (y != index) | (np.arange(len(y)) % 2 == 0)
        estimator = LogisticRegression(max_iter=300).fit(x[keep][:600], y[keep][:600])
        name = f"team-a/m{index}.tar.gz"
        s3_server.put(bucket, f"models/{name}", _archive(estimator))
        expected[name] = estimator.predict(np.asarray(rows)).tolist()
        padded = LogisticRegression(max_iter=300).fit(x[keep][:600], y[keep][:600])
        padded.padding_ = np.random.default_rng(index).random(PADDING // 8)
        big = f"big/b{index}.tar.gz"
        s3_server.put(bucket, f"models/{big}", _archive(padded))
        expected[big] = padded.predict(np.asarray(rows)).tolist()
    s3_server.put(
        bucket,
        "models/broken.tar.gz",
        _archive(None, "def model_fn(model_dir):\n    raise RuntimeError('no weights here')\n"),
    )
    return f"s3://{bucket}/models/", expected


@pytest.fixture(scope="module")
def server(s3_server: MotoS3, start_server: ServerFactory) -> PolyhostProcess:  # noqa: F811
    return start_server("--model-load-wait", "20", name="mme", env=s3_server.env())


def _mme(prefix: str, **extra: Any) -> dict[str, Any]:
    return {"Image": "polyhost/sklearn", "Mode": "MultiModel", "ModelDataUrl": prefix, **extra}


def _invoke(runtime: Any, endpoint: str, target: str, rows: list[list[float]]) -> Any:
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint,
        Body=json.dumps(rows),
        ContentType="application/json",
        TargetModel=target,
    )
    return json.loads(answer["Body"].read())


def _error(call: Any) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        call()
    error = caught.value.response
    return (
        error["Error"]["Code"],
        error["ResponseMetadata"]["HTTPStatusCode"],
        str(error["Error"]["Message"]),
    )


@pytest.fixture(scope="module")
def endpoint(sagemaker: Any, prefix: tuple[str, dict[str, list[int]]]) -> str:
    assert deploy(sagemaker, "mme", [_mme(prefix[0])])["EndpointStatus"] == "InService"
    return "mme"


def test_many_models_answer_right_and_warm(
    runtime: Any, endpoint: str, prefix: tuple[str, dict[str, list[int]]], rows: Any
) -> None:
    _, expected = prefix
    names = [f"team-a/m{i}.tar.gz" for i in range(MODELS)]
    for _ in range(2):
        for name in names:
            assert _invoke(runtime, endpoint, name, rows) == expected[name]


def test_concurrent_first_calls_load_once(
    server: PolyhostProcess,
    runtime: Any,
    sagemaker: Any,
    prefix: tuple[str, dict[str, list[int]]],
    rows: Any,
) -> None:
    url, expected = prefix
    assert deploy(sagemaker, "mme-burst", [_mme(url)])["EndpointStatus"] == "InService"
    name = "team-a/m3.tar.gz"
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: _invoke(runtime, "mme-burst", name, rows), range(8)))
    assert all(answer == expected[name] for answer in answers)
    # Loaded once here (mme's own container loaded it in another test, or not yet).
    assert server.log().count(f"model {name} loaded into container mme-burst") == 1
    assert server.log().count("loaded into container") >= 1


def test_budget_evicts_least_recently_used(
    runtime: Any, sagemaker: Any, prefix: tuple[str, dict[str, list[int]]], rows: Any
) -> None:
    url, expected = prefix
    budget = {"POLYHOST_MULTI_MODEL_MEMORY_BYTES": str(int(PADDING * 2.6))}
    assert (
        deploy(sagemaker, "mme-budget", [_mme(url, Environment=budget)])["EndpointStatus"]
        == "InService"
    )
    names = [f"big/b{i}.tar.gz" for i in range(4)]
    for _ in range(2):  # four models, room for two: every call past the second evicts
        for name in names:
            assert _invoke(runtime, "mme-budget", name, rows) == expected[name]
    described = sagemaker.describe_endpoint(EndpointName="mme-budget")
    assert described["EndpointStatus"] == "InService"


def test_errors(runtime: Any, endpoint: str, sagemaker: Any, rows: Any) -> None:
    code, status, message = _error(
        lambda: runtime.invoke_endpoint(EndpointName=endpoint, Body=b"[]")
    )
    assert (code, status) == ("ValidationError", 400) and "TargetModel is required" in message
    code, status, message = _error(lambda: _invoke(runtime, endpoint, "nothing.tar.gz", rows))
    assert (code, status) == ("ValidationError", 400)
    assert "/models/nothing.tar.gz" in message
    for bad in ("../m0.tar.gz", "/abs.tar.gz", "a%2e%2e/x", "s3://elsewhere/x.tar.gz"):
        code, status, message = _error(lambda bad=bad: _invoke(runtime, endpoint, bad, rows))
        assert (code, status) == ("ValidationError", 400), (bad, message)
        assert "TargetModel must be a path below" in message
    code, status, message = _error(lambda: _invoke(runtime, endpoint, "broken.tar.gz", rows))
    assert (code, status) == ("ModelError", 424) and "no weights here" in message
    assert _invoke(runtime, endpoint, "team-a/m0.tar.gz", rows)  # still serving the rest


def test_refused_at_create_model(sagemaker: Any) -> None:
    code, _, message = _error(
        lambda: sagemaker.create_model(
            ModelName="mme-tf",
            PrimaryContainer=_mme("s3://b/p/", Image="polyhost/tensorflow"),
        )
    )
    assert code == "ValidationException" and "serves multiple models" in message
