"""The MNIST multi-container walkthrough, fast: tiny data, tiny training, the real everything else.

A small MNIST-format data set is written as IDX files (one split gzipped, one not), both models
are trained by the example's own training scripts, packaged by its packager, put in a real S3
(moto's server), and deployed with the walkthrough's boto3 calls to a real polyhost server that
runs the built-in polyhost/pytorch and polyhost/tensorflow stacks. Then `run_demo.py` runs as a
user runs it, starting its own S3 and server and reusing the trained models.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.examples.loader import EXAMPLES, example_module
from tests.support.s3 import MotoS3
from tests.support.server import PolyhostProcess, ServerFactory, free_port

EXAMPLE = "mnist-multi-container"
data = example_module(EXAMPLE, "data")
package = example_module(EXAMPLE, "package")
walkthrough = example_module(EXAMPLE, "walkthrough")

TRAIN_IMAGES = 600
TEST_IMAGES = 200
EPOCHS = 2


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape
    )
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(raw)
    else:
        path.write_bytes(raw)


def synthetic_split(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noise with a bright 8x7 block whose place on a 3x4 grid is the class: easy to learn."""
    labels = rng.integers(0, 10, count).astype(np.uint8)
    images = rng.integers(0, 60, (count, 28, 28)).astype(np.uint8)
    for index, label in enumerate(labels):
        row, column = divmod(int(label), 4)
        top, left = 1 + row * 9, column * 7
        images[index, top : top + 8, left : left + 7] = rng.integers(180, 256, (8, 7))
    return images, labels


def write_dataset(folder: Path) -> Path:
    """Training files gzipped with the MNIST site's names; test files plain, dotted names."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images, labels = synthetic_split(TRAIN_IMAGES, rng)
    write_idx(folder / "train-images-idx3-ubyte.gz", images)
    write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    images, labels = synthetic_split(TEST_IMAGES, rng)
    write_idx(folder / "t10k-images.idx3-ubyte", images)
    write_idx(folder / "t10k-labels.idx1-ubyte", labels)
    return folder


@dataclass(frozen=True)
class Trained:
    data_dir: Path
    work: Path
    metrics: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """Both models trained by the example's scripts, run as the demo runs them (in parallel)."""
    base = tmp_path_factory.mktemp("mnist")
    data_dir = write_dataset(base / "data")
    work = base / "work"
    runs = {}
    for framework in ("pytorch", "tensorflow"):
        command = [
            sys.executable, str(EXAMPLES / EXAMPLE / f"train_{framework}.py"),
            "--data", str(data_dir), "--out", str(work / framework),
            "--train-images", "0", "--epochs", str(EPOCHS),
        ]  # fmt: skip
        runs[framework] = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    metrics = {}
    for framework, run in runs.items():
        output, _ = run.communicate(timeout=240)
        assert run.returncode == 0, output.decode(errors="replace")
        metrics[framework] = json.loads((work / framework / "metrics.json").read_text())
    return Trained(data_dir, work, metrics)


@pytest.fixture(scope="module")
def s3_polyhost(
    tmp_path_factory: pytest.TempPathFactory, s3_server: MotoS3, start_server: ServerFactory
) -> PolyhostProcess:
    """A polyhost server that reaches the test S3 through the standard AWS variables."""
    roles = s3_server.role_credentials(
        walkthrough.ROLE, tmp_path_factory.mktemp("polyhost-mnist") / "roles"
    )
    return start_server(
        "--role-credentials", str(roles), name="polyhost-mnist", images=False, env=s3_server.env()
    )


def test_data_reads_gzipped_and_plain_idx(trained: Trained) -> None:
    train = data.load_split(trained.data_dir, "train")
    test = data.load_split(trained.data_dir, "t10k")
    assert train.images.shape == (TRAIN_IMAGES, 28, 28)
    assert test.labels.shape == (TEST_IMAGES,)
    assert train.head(10).images.shape == (10, 28, 28)
    normalized = data.normalize(test.images[:5])
    assert normalized.dtype == np.float32
    assert np.allclose(normalized.mean(axis=(1, 2)), 0, atol=1e-4)


def test_data_errors_say_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(data.DataError, match="--data needs a folder"):
        data.ensure_dataset(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    for split, kind, dims in (
        ("train", "images", 3),
        ("train", "labels", 1),
        ("t10k", "images", 3),
        ("t10k", "labels", 1),
    ):
        (bad / f"{split}-{kind}-idx{dims}-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(data.DataError, match="header says"):
        data.load_split(bad, "train")


def test_training_reports_accuracy_above_chance(trained: Trained) -> None:
    for framework, metrics in trained.metrics.items():
        assert metrics["train_images"] == TRAIN_IMAGES, framework
        assert metrics["test_images"] == TEST_IMAGES, framework
        assert metrics["accuracy"] > 0.5, (framework, metrics)


def test_archives_have_sagemaker_layout(trained: Trained, tmp_path: Path) -> None:
    pytorch = package.package_pytorch(trained.work / "pytorch", tmp_path / "pt.tar.gz")
    tensorflow = package.package_tensorflow(trained.work / "tensorflow", tmp_path / "tf.tar.gz")
    assert package.members(pytorch) == ["code/inference.py", "model.pth"]
    tf_members = package.members(tensorflow)
    assert "model/1/saved_model.pb" in tf_members
    assert any(name.startswith("model/1/variables/") for name in tf_members)


def test_walkthrough_deploys_and_both_containers_answer(
    trained: Trained, s3_server: MotoS3, s3_polyhost: PolyhostProcess, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket()
    urls = {}
    for framework, pack in (
        ("pytorch", package.package_pytorch),
        ("tensorflow", package.package_tensorflow),
    ):
        archive = pack(trained.work / framework, tmp_path / f"{framework}.tar.gz")
        key = f"multi-container-endpoint/output/{framework}/model.tar.gz"
        s3_server.put(bucket, key, archive.read_bytes())
        urls[framework] = f"s3://{bucket}/{key}"

    sm_client, runtime_sm_client = walkthrough.clients(s3_polyhost.url)
    walkthrough.delete_if_present(sm_client)  # nothing there yet: must not fail
    description = walkthrough.deploy(sm_client, urls["tensorflow"], urls["pytorch"])
    assert description["EndpointStatus"] == "InService"
    model = sm_client.describe_model(ModelName=walkthrough.MODEL_NAME)
    assert model["InferenceExecutionConfig"] == {"Mode": "Direct"}
    assert [c["ContainerHostname"] for c in model["Containers"]] == [
        "pytorch-mnist",
        "tensorflow-mnist",
    ]

    test = data.load_split(trained.data_dir, "t10k")
    tf_scores = walkthrough.invoke(
        runtime_sm_client, "tensorflow-mnist", walkthrough.tensorflow_request(test.images[:3])
    )
    pt_scores = walkthrough.invoke(
        runtime_sm_client, "pytorch-mnist", walkthrough.pytorch_request(test.images[:3])
    )
    assert tf_scores.shape == (3, 10)
    assert np.allclose(tf_scores.sum(axis=1), 1, atol=1e-3)  # softmax probabilities
    assert pt_scores.shape == (3, 10)
    assert np.allclose(np.exp(pt_scores).sum(axis=1), 1, atol=1e-3)  # log-probabilities

    for hostname in ("tensorflow-mnist", "pytorch-mnist"):
        result = walkthrough.evaluate(
            runtime_sm_client, hostname, test, batch_size=50, single_requests=3
        )
        assert result.images == TEST_IMAGES
        assert result.accuracy > 0.5, result.summary()
        assert len(result.batch_latencies_ms) == TEST_IMAGES // 50
        assert len(result.single_latencies_ms) == 3

    # The inference script's own errors reach the caller as the container's status.
    with pytest.raises(runtime_sm_client.exceptions.ModelError, match="N x 1 x 28 x 28"):
        runtime_sm_client.invoke_endpoint(
            EndpointName=walkthrough.ENDPOINT_NAME,
            TargetContainerHostname="pytorch-mnist",
            ContentType="application/json",
            Body=json.dumps({"inputs": [[1.0, 2.0]]}),
        )


def test_run_demo_end_to_end(trained: Trained) -> None:
    """`run_demo.py` as `make run` runs it, with its own S3 and server, models from the cache."""
    port = free_port()
    command = [
        sys.executable, str(EXAMPLES / EXAMPLE / "run_demo.py"),
        "--port", str(port), "--data", str(trained.data_dir), "--work", str(trained.work),
        "--train-images", "0", "--epochs", str(EPOCHS), "--eval-images", "100", "--exit",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "pytorch: cached model, 600 images x 2 epochs" in output
    assert "tensorflow: cached model" in output
    assert "s3://polyhost-examples/" in output
    assert "mnist-multi-container-ep: InService" in output
    for hostname in ("tensorflow-mnist", "pytorch-mnist"):
        line = next(line for line in output.splitlines() if line.strip().startswith(hostname))
        assert "on 100 held-out images" in line
    assert f"polyhost invoke mnist-multi-container-ep @{trained.work}" in output
    dashboard = next(line for line in output.splitlines() if "/ui/ in a browser" in line)
    assert "no token is needed" in dashboard, output
    sample = trained.work / "requests" / "tensorflow-mnist.json"
    assert np.asarray(json.loads(sample.read_text())["instances"]).shape == (1, 28, 28, 1)
    # --exit: the server it started is gone again.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
