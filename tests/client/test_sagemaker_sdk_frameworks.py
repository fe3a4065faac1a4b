"""The SageMaker Python SDK's framework model classes deploy on polyhost unchanged.

TensorFlowModel, PyTorchModel (whose entry point the SDK repacks into the archive and uploads to
the session's bucket), SKLearnModel and XGBoostModel (whose entry point the SDK uploads as a
source archive the container fetches from S3) and HuggingFaceModel: each with the image URI the
SDK picks, `.deploy()`, its own predictor's `predict()`, then delete. S3 is a local
S3-compatible server (moto), as a user's MinIO would be; the models are tiny ones built here.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.s3 import MotoS3, s3_server  # noqa: F401  (fixture)
from tests.support.server import PolyhostProcess, ServerFactory

SDK_PYTHON = os.environ.get("POLYHOST_SDK_PYTHON")
ROLE = "arn:aws:iam::123456789012:role/polyhost"
FLOW = Path(__file__).with_name("sagemaker_sdk_frameworks_flow.py")
# Which stack serves the image URI each class gets from the SDK.
REPOSITORIES = {
    "tensorflow": "/tensorflow-inference:",
    "pytorch": "/pytorch-inference:",
    "sklearn": "/sagemaker-scikit-learn:",
    "xgboost": "/sagemaker-xgboost:",
    "huggingface": "/huggingface-pytorch-inference:",
}

pytestmark = pytest.mark.skipif(
    not SDK_PYTHON, reason="the SDK's venv is made by `make test` (POLYHOST_SDK_PYTHON)"
)

PYTORCH_ENTRY = """
import os

import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(28 * 28, 10)

    def forward(self, x):
        return torch.softmax(self.layer(torch.flatten(x, 1)), dim=1)


def model_fn(model_dir):
    net = Net()
    net.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), map_location="cpu"))
    return net.eval()
"""

SKLEARN_ENTRY = """
import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))
"""

# The XGBoost container's defaults load `xgboost-model` and predict: the script adds nothing.
XGBOOST_ENTRY = '"""Serve xgboost-model with the container\'s default handlers."""\n'


def _archive(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


def _digits() -> tuple[Any, Any]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.data, digits.target


def _tensorflow(folder: Path) -> dict[str, Any]:
    import tensorflow as tf

    class Scale(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])  # type: ignore[misc]
        def serve(self, x: Any) -> Any:
            return {"y": x * 2.0 + 1.0}

    module = Scale()
    tf.saved_model.save(module, str(folder / "1"), signatures={"serving_default": module.serve})
    request = [[1.0, 2.0, 3.0], [0.5, 0.0, -1.0]]
    return {"request": request, "expected": [[v * 2.0 + 1.0 for v in row] for row in request]}


def _pytorch(folder: Path, code: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    entry = code / "inference.py"
    entry.write_text(PYTORCH_ENTRY, encoding="utf-8")
    namespace: dict[str, Any] = {}
    exec(compile(PYTORCH_ENTRY, str(entry), "exec"), namespace)
    torch.manual_seed(0)
    net = namespace["Net"]().eval()
    torch.save(net.state_dict(), folder / "model.pth")
    request = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    with torch.no_grad():
        expected = net(torch.from_numpy(request)).numpy()
    return {"entry_point": str(entry), "request": request.tolist(), "expected": expected.tolist()}


def _sklearn(folder: Path, code: Path) -> dict[str, Any]:
    import joblib
    from sklearn.linear_model import LogisticRegression

    x, y = _digits()
    model = LogisticRegression(max_iter=300).fit(x, y)
    joblib.dump(model, folder / "model.joblib")
    entry = code / "sklearn_inference.py"
    entry.write_text(SKLEARN_ENTRY, encoding="utf-8")
    request = x[:4].astype("float32")
    expected = model.predict(request)
    assert list(expected) == list(y[:4])  # a real digits model, not a constant
    return {"entry_point": str(entry), "request": request.tolist(), "expected": expected.tolist()}


def _xgboost(folder: Path, code: Path) -> dict[str, Any]:
    import xgboost
    from scipy.sparse import csr_matrix

    x, y = _digits()
    # Sparse, as libsvm rows are: an absent feature is missing, not zero.
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 3},
        xgboost.DMatrix(csr_matrix(x), label=(y == 0).astype(int)),
        num_boost_round=5,
    )
    (folder / "xgboost-model").write_bytes(booster.save_raw("json"))
    entry = code / "xgboost_inference.py"
    entry.write_text(XGBOOST_ENTRY, encoding="utf-8")
    row = x[0]  # a zero
    line = "0 " + " ".join(f"{i}:{value:g}" for i, value in enumerate(row) if value)
    expected = booster.predict(xgboost.DMatrix(csr_matrix(row.reshape(1, -1)))).tolist()
    assert expected[0] > 0.5
    return {"entry_point": str(entry), "request": line, "expected": expected}


def _huggingface(folder: Path) -> dict[str, Any]:
    os.environ.setdefault("USE_TF", "0")
    import torch
    import transformers

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "good", "movie"]
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n", encoding="utf-8")
    tokenizer = transformers.BertTokenizer(str(vocab))
    settings = transformers.BertConfig(
        vocab_size=len(words), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64, id2label={0: "NEG", 1: "POS"},
        label2id={"NEG": 0, "POS": 1},
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(settings).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"request": "the cat sat, good movie", "labels": ["NEG", "POS"]}


@pytest.fixture(scope="module")
def cases(s3_server: MotoS3, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """Each class's model archive in S3, and the request and answer the flow checks."""
    base = tmp_path_factory.mktemp("sdk-frameworks")
    code = base / "code"
    code.mkdir()
    bucket = s3_server.new_bucket("sdk-models")
    builders = {
        "tensorflow": lambda folder: _tensorflow(folder),
        "pytorch": lambda folder: _pytorch(folder, code),
        "sklearn": lambda folder: _sklearn(folder, code),
        "xgboost": lambda folder: _xgboost(folder, code),
        "huggingface": lambda folder: _huggingface(folder),
    }
    found: dict[str, dict[str, Any]] = {}
    for which, build in builders.items():
        folder = base / which
        folder.mkdir()
        case = build(folder)
        key = f"models/{which}/model.tar.gz"
        s3_server.put(bucket, key, _archive(folder))
        found[which] = {**case, "model_data": f"s3://{bucket}/{key}"}
    path = base / "cases.json"
    path.write_text(json.dumps(found), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(
    s3_server: MotoS3,  # noqa: F811
    start_server: ServerFactory,
    tmp_path_factory: pytest.TempPathFactory,
) -> PolyhostProcess:
    roles = s3_server.role_credentials(ROLE, tmp_path_factory.mktemp("roles"))
    return start_server(
        "--role-credentials", str(roles), name="sdk-frameworks", images=False,
        env=s3_server.env(),
    )  # fmt: skip


@pytest.fixture(scope="module")
def flows(
    server: PolyhostProcess,
    s3_server: MotoS3,  # noqa: F811
    cases: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[subprocess.Popen[bytes], Path]]]:
    """Every class's flow at once: the SDK polls DescribeEndpoint every 30 s while it waits for
    InService, so one after the other they would mostly sleep."""
    assert SDK_PYTHON is not None
    logs = tmp_path_factory.mktemp("flows")
    env = {**os.environ, **s3_server.env(), "SAGEMAKER_SUPPRESS_V2_WARNING": "1"}
    running: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    for which in REPOSITORIES:
        bucket = s3_server.new_bucket("sdk-session")  # the Session's default bucket
        out = logs / f"{which}.out"
        with open(out, "wb") as stdout, open(logs / f"{which}.err", "wb") as stderr:
            command = [SDK_PYTHON, str(FLOW), server.url, bucket, str(cases), which]
            running[which] = (subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env), out)
    yield running
    for process, _ in running.values():
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("which", list(REPOSITORIES))
def test_the_sdks_framework_class_deploys_and_predicts_unchanged(
    which: str, flows: dict[str, tuple[subprocess.Popen[bytes], Path]], sagemaker: Any
) -> None:
    process, out = flows[which]
    returncode = process.wait(timeout=300)
    stdout = out.read_text(errors="replace")
    stderr = out.with_suffix(".err").read_text(errors="replace")
    assert returncode == 0, (stdout[-2000:], stderr[-4000:])
    # The SDK prints a "!" progress mark on stdout while it waits for InService.
    lines = [line.lstrip("-!") for line in stdout.splitlines()]
    assert "checked" in lines and "deleted" in lines
    image = next(line.split(" ", 1)[1] for line in lines if line.startswith("image "))
    assert REPOSITORIES[which] in image and ".dkr.ecr.us-east-1.amazonaws.com/" in image
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sagemaker.describe_endpoint(EndpointName=f"sdk-{which}")
