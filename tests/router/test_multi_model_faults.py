"""A multi-model container that dies or hangs while it loads a model, end to end: a real server,
a `polyhost/sklearn` MultiModel container, models whose `model_fn` calls `os._exit` or sleeps.
The caller gets a ModelError naming the model and the container (never a hang), the container
is restarted by the supervisor, and the models that died with it are loaded again when called,
not taken for loaded."""

from __future__ import annotations

import io
import json
import sys
import tarfile
import time
import urllib.request
from pathlib import Path
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
from tests.support.waiting import eventually

DIES = "import os\n\ndef model_fn(model_dir):\n    os._exit(3)\n"
HANGS = "import time\n\ndef model_fn(model_dir):\n    time.sleep(600)\n"


def _archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def rows() -> list[list[float]]:
    rows: list[list[float]] = load_digits().data[:2].astype(np.float32).tolist()
    return rows


@pytest.fixture(scope="module")
def prefix(s3_server: MotoS3, rows: list[list[float]]) -> tuple[str, list[int]]:  # noqa: F811
    x, y = load_digits(return_X_y=True)
    estimator = LogisticRegression(max_iter=300).fit(x[:600], y[:600])
    weights = io.BytesIO()
    joblib.dump(estimator, weights)
    bucket = s3_server.new_bucket()
    s3_server.put(bucket, "m/ok/a.tar.gz", _archive({"model.joblib": weights.getvalue()}))
    for name, script in (("dies", DIES), ("hangs", HANGS)):
        s3_server.put(
            bucket, f"m/bad/{name}.tar.gz", _archive({"code/inference.py": script.encode()})
        )
    return f"s3://{bucket}/m/", estimator.predict(np.asarray(rows)).tolist()


@pytest.fixture(scope="module")
def server(s3_server: MotoS3, start_server: ServerFactory) -> PolyhostProcess:  # noqa: F811
    return start_server(
        *("--model-load-wait", "60", "--model-load-timeout", "60"),
        *("--health-check-interval", "0.5", "--health-check-failures", "2", "--stop-grace", "2"),
        name="mme-faults",
        env=s3_server.env(),
    )


@pytest.fixture(scope="module")
def endpoint(sagemaker: Any, prefix: tuple[str, list[int]]) -> str:
    container = {
        "Image": "polyhost/sklearn",
        "Mode": "MultiModel",
        "ModelDataUrl": prefix[0],
        # A load this stack has not finished within 2 s makes its /ping fail.
        "Environment": {"POLYHOST_MULTI_MODEL_LOAD_TIMEOUT_S": "2"},
    }
    assert deploy(sagemaker, "mme-faults", [container])["EndpointStatus"] == "InService"
    return "mme-faults"


def _invoke(runtime: Any, target: str, rows: list[list[float]]) -> Any:
    answer = runtime.invoke_endpoint(
        EndpointName="mme-faults",
        Body=json.dumps(rows),
        ContentType="application/json",
        TargetModel=target,
    )
    return json.loads(answer["Body"].read())


def _failure(runtime: Any, target: str, rows: list[list[float]]) -> tuple[str, int, str]:
    with pytest.raises(ClientError) as caught:
        _invoke(runtime, target, rows)
    error = caught.value.response
    return (
        error["Error"]["Code"],
        error["ResponseMetadata"]["HTTPStatusCode"],
        str(error["Error"]["Message"]),
    )


def _serving_again(runtime: Any, rows: list[list[float]], expected: list[int]) -> bool:
    try:
        return bool(_invoke(runtime, "ok/a.tar.gz", rows) == expected)
    except ClientError as error:  # 503 while the container restarts
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503, error.response
        return False


def _loaded_models(server: PolyhostProcess) -> float:
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=30) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith("polyhost_loaded_models{") and 'endpoint_name="mme-faults"' in line:
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no polyhost_loaded_models series for mme-faults")


@pytest.mark.parametrize(("model", "cause"), [("dies", "exited with code 3"), ("hangs", "health")])
def test_a_container_that_breaks_during_a_load_is_restarted_and_forgets_its_models(
    server: PolyhostProcess,
    runtime: Any,
    endpoint: str,
    prefix: tuple[str, list[int]],
    rows: list[list[float]],
    model: str,
    cause: str,
) -> None:
    _, expected = prefix
    assert _invoke(runtime, "ok/a.tar.gz", rows) == expected
    loads_before = server.log().count("model ok/a.tar.gz loaded into container")
    assert _loaded_models(server) >= 1
    started = time.monotonic()
    code, status, message = _failure(runtime, f"bad/{model}.tar.gz", rows)
    assert time.monotonic() - started < 45  # the restart ended it, not the 60 s load bound
    assert (code, status) == ("ModelError", 424), message
    assert f"bad/{model}.tar.gz" in message and "did not answer the load" in message
    restart = eventually(
        lambda: [
            line for line in server.log().splitlines() if "restarting in" in line and cause in line
        ],
        f"the supervisor restarting the container ({cause})",
        timeout=60,
        interval=0.2,
    )
    assert restart
    eventually(lambda: _serving_again(runtime, rows, expected), "the endpoint serving again",
               timeout=90, interval=0.2)  # fmt: skip
    # The model died with the container: it was loaded again, not taken for loaded.
    assert server.log().count("model ok/a.tar.gz loaded into container") == loads_before + 1
    assert _loaded_models(server) == 1


HANGING_IMAGE = "polyhost-test/hanging-loader:1"


def test_a_bring_your_own_container_whose_load_hangs_is_restarted(
    s3_server: MotoS3,  # noqa: F811
    start_server: ServerFactory,
    prefix: tuple[str, list[int]],
    rows: list[list[float]],
) -> None:
    """A container of the user's own cannot say its load hung: the router's load bound
    (--model-load-timeout) ends the call with a ModelError, and the container is restarted,
    since loads run one at a time in it and this one would hold it forever."""

    def images(path: Path) -> Path:
        program = Path(__file__).parents[1] / "support" / "containers" / "hanging_loader.py"
        path.write_text(
            f'[images."{HANGING_IMAGE}"]\ncommand = ["{sys.executable}", "{program}"]\n'
            "multi_models = true\n",
            encoding="utf-8",
        )
        return path

    own = start_server(
        *("--model-load-wait", "30", "--model-load-timeout", "2", "--stop-grace", "1"),
        name="mme-hung-byo",
        images=images,
        env=s3_server.env(),
    )
    sagemaker, runtime = own.sagemaker(), own.runtime()
    container = {"Image": HANGING_IMAGE, "Mode": "MultiModel", "ModelDataUrl": prefix[0]}
    assert deploy(sagemaker, "mme-hung", [container])["EndpointStatus"] == "InService"
    started = time.monotonic()
    with pytest.raises(ClientError) as caught:
        runtime.invoke_endpoint(
            EndpointName="mme-hung", Body=json.dumps(rows), TargetModel="ok/a.tar.gz"
        )
    assert time.monotonic() - started < 20
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError", error
    eventually(
        lambda: (
            "did not finish within 2 s (--model-load-timeout)" in own.log()
            and own.log().count("started container mme-hung.") >= 2
        ),
        "the hung container to be restarted",
        30,
        0.2,
    )
