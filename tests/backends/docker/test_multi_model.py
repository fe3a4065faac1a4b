"""Multi-model endpoints on `--backend docker`: real daemon, the built-in sklearn image, models
under a prefix of a local S3 server, boto3.

The container sees nothing of the server's disk but its model folder, mounted read-only at
/opt/ml/models: each model it is asked to load is put there first (hard links to the artifact
store's files) and the load names its path inside the container. The tests check that two
TargetModels answer as their estimators do, that a memory budget evicts (and an eviction
removes the model's files from the folder), and that an image of one's own serves many models
only when its label says so. The first tests need no daemon: the mount a multi-model container
gets, and how a model is put into its folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import joblib
import numpy as np
import pytest
from botocore.exceptions import ClientError
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from polyhost.backends.base import LaunchSpec
from polyhost.backends.docker.build import follow
from polyhost.backends.docker.env import MULTI_MODEL_ENV
from polyhost.backends.docker.images import ACCEPT_BIND_TO_PORT, MULTI_MODELS
from polyhost.backends.docker.labels import ENDPOINT
from polyhost.backends.docker.run import create_options
from polyhost.router.multi_model import ModelStaging
from tests.support import docker_env
from tests.support.docker import client_or_skip, docker_server, ensure_images, labelled
from tests.support.docker_images import BYO_CONTEXT, BYO_IMAGE
from tests.support.endpoints import create_config, create_model, wait_status
from tests.support.s3 import MotoS3, s3_server  # noqa: F401  (fixture)
from tests.support.server import PolyhostProcess

START_S = 180.0
PADDING = 16 * 1024 * 1024  # bytes of padding in each big model: about 16 MB in memory
LABELLED_IMAGE = "polyhost-test/byo-mme:1"  # the tests' BYO image with the multi-models label
LATE_IMAGE = "polyhost-test/byo-late:1"  # created only after CreateModel took it


# -- no daemon needed ------------------------------------------------------------------------------


def _launch(tmp_path: Path, environment: dict[str, str]) -> LaunchSpec:
    return LaunchSpec(
        container_id="e.r1.v.i-0.h",
        image="polyhost/sklearn",
        environment=environment,
        model_dir=tmp_path / "model",
        host="127.0.0.1",
        port=21040,
        safe_port_range=(21041, 21049),
        log_path=tmp_path / "container.log",
    )


def test_a_multi_model_container_gets_its_model_folder_at_opt_ml_models(tmp_path: Path) -> None:
    def volumes(environment: dict[str, str]) -> object:
        made = create_options(
            _launch(tmp_path, environment),
            image="polyhost/sklearn:1",
            name="n",
            labels={},
            environment={},
            network="",
        )
        return made["volumes"]

    folder = str(tmp_path / "model")
    assert volumes({MULTI_MODEL_ENV: "true"}) == {folder: {"bind": "/opt/ml/models", "mode": "ro"}}
    assert volumes({}) == {folder: {"bind": "/opt/ml/model", "mode": "ro"}}


def test_staging_links_a_model_into_the_container_folder_and_removes_it(tmp_path: Path) -> None:
    source = tmp_path / "artifacts" / "abc"
    (source / "code").mkdir(parents=True)
    (source / "model.joblib").write_bytes(b"weights")
    (source / "code" / "inference.py").write_text("def model_fn(d):\n    return d\n")
    os.symlink("model.joblib", source / "alias.joblib")
    host = tmp_path / "container" / "model"
    host.mkdir(parents=True)
    staging = ModelStaging(host, PurePosixPath("/opt/ml/models"))

    first, url = staging.stage(source, "team-a/m0.tar.gz")
    second, other = staging.stage(source, "team-a/m0.tar.gz")

    assert first.parent == host and second.parent == host and first != second
    assert url == f"/opt/ml/models/{first.name}/model" and other != url
    copy = first / "model"
    assert os.stat(copy / "model.joblib").st_ino == os.stat(source / "model.joblib").st_ino
    assert (copy / "code" / "inference.py").read_text().startswith("def model_fn")
    assert os.readlink(copy / "alias.joblib") == "model.joblib"
    staging.remove(first)
    assert not first.exists() and second.exists()
    assert (source / "model.joblib").read_bytes() == b"weights"  # the store's file stays
    with pytest.raises(ValueError):
        staging.remove(source)  # not a folder it made
    assert source.exists()


# -- the daemon ------------------------------------------------------------------------------------


def _archive(estimator: Any) -> bytes:
    weights = io.BytesIO()
    joblib.dump(estimator, weights)
    data = weights.getvalue()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo("model.joblib")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def docker_client() -> Any:
    client = client_or_skip()
    ensure_images()
    return client


@pytest.fixture(scope="module")
def rows() -> list[list[float]]:
    rows: list[list[float]] = load_digits().data[1500:1504].astype(np.float32).tolist()
    return rows


@pytest.fixture(scope="module")
def prefix(s3_server: MotoS3, rows: list[list[float]]) -> tuple[str, dict[str, list[int]]]:  # noqa: F811
    """s3://bucket/models/ with two small models and three padded (big) ones, each trained on
    other digits so that each answers differently; their expected answers."""
    data = load_digits()
    x, y = data.data.astype(np.float32), data.target
    bucket = s3_server.new_bucket()
    expected: dict[str, list[int]] = {}
    for index in range(3):
        keep = (y != index) | (np.arange(len(y)) % 2 == 0)
        estimator = LogisticRegression(max_iter=300).fit(x[keep][:600], y[keep][:600])
        if index < 2:
            name = f"team-a/m{index}.tar.gz"
            s3_server.put(bucket, f"models/{name}", _archive(estimator))
            expected[name] = estimator.predict(np.asarray(rows)).tolist()
        padded = LogisticRegression(max_iter=300).fit(x[keep][:600], y[keep][:600])
        padded.padding_ = np.random.default_rng(index).random(PADDING // 8)
        big = f"big/b{index}.tar.gz"
        s3_server.put(bucket, f"models/{big}", _archive(padded))
        expected[big] = padded.predict(np.asarray(rows)).tolist()
    return f"s3://{bucket}/models/", expected


@pytest.fixture(scope="module")
def server(
    docker_client: Any,
    s3_server: MotoS3,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PolyhostProcess]:
    state = tmp_path_factory.mktemp("docker-mme") / "state"
    proc = docker_server(state)
    proc.env = s3_server.env()
    proc.start()
    yield proc
    proc.stop()
    for container in labelled(docker_client, state):  # only if a test failed half-way
        docker_client.api.remove_container(container["Id"], force=True)


def _invoke(runtime: Any, endpoint: str, target: str, rows: list[list[float]]) -> Any:
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint,
        Body=json.dumps(rows),
        ContentType="application/json",
        TargetModel=target,
    )
    return json.loads(answer["Body"].read())


def _loaded_models(server: PolyhostProcess, endpoint: str) -> float:
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=30) as answer:
        text = answer.read().decode()
    for line in text.splitlines():
        if line.startswith("polyhost_loaded_models{") and f'endpoint_name="{endpoint}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no polyhost_loaded_models series for {endpoint}")


def _container_of(client: Any, server: PolyhostProcess, endpoint: str) -> Any:
    """The endpoint's one running Docker container."""
    found = [
        c
        for c in labelled(client, server.state_dir)
        if c["State"] == "running" and c["Labels"].get(ENDPOINT) == endpoint
    ]
    assert len(found) == 1, found
    return client.containers.get(found[0]["Id"])


def _in_container(container: Any) -> list[str]:
    """What the container itself sees in its models folder."""
    code, output = container.exec_run(["ls", "-1", "/opt/ml/models"])
    assert code == 0, output
    return sorted(output.decode().split())


def test_two_target_models_answer_from_the_mounted_folder_and_a_budget_evicts(
    docker_client: Any,
    server: PolyhostProcess,
    prefix: tuple[str, dict[str, list[int]]],
    rows: list[list[float]],
) -> None:
    url, expected = prefix
    sagemaker, runtime = server.sagemaker(), server.runtime()
    # Room for the two small models and two big ones: a third big one must evict.
    budget = {"POLYHOST_MULTI_MODEL_MEMORY_BYTES": str(int(PADDING * 2.6))}
    container = {
        "Image": "polyhost/sklearn",
        "Mode": "MultiModel",
        "ModelDataUrl": url,
        "Environment": budget,
    }
    create_model(sagemaker, "mme", [container])
    create_config(sagemaker, "mme", [("AllTraffic", "mme", 1, 1.0)])
    sagemaker.create_endpoint(EndpointName="mme", EndpointConfigName="mme")
    described = wait_status(sagemaker, "mme", timeout=START_S)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    running = _container_of(docker_client, server, "mme")
    mounts = {m["Destination"]: m for m in running.attrs["Mounts"]}
    assert mounts["/opt/ml/models"]["RW"] is False and "/opt/ml/model" not in mounts
    assert _in_container(running) == []  # nothing before the first call

    small = ["team-a/m0.tar.gz", "team-a/m1.tar.gz"]
    for _ in range(2):  # the first round loads, the second is warm
        for name in small:
            assert _invoke(runtime, "mme", name, rows) == expected[name]
    log = server.log()
    for name in small:
        assert log.count(f"model {name} loaded into container") == 1, name
    seen = _in_container(running)
    assert len(seen) == 2
    host_folder = Path(mounts["/opt/ml/models"]["Source"])
    assert sorted(p.name for p in host_folder.iterdir()) == seen

    big = ["big/b0.tar.gz", "big/b1.tar.gz", "big/b2.tar.gz"]
    for _ in range(2):  # three big models, room for two: every call past the second evicts
        for name in big:
            assert _invoke(runtime, "mme", name, rows) == expected[name]
    loaded = _loaded_models(server, "mme")
    assert 2 <= loaded < 5  # some were unloaded, and not everything
    # Each unloaded model's files left the folder: it holds exactly the loaded ones.
    assert len(_in_container(running)) == loaded
    assert len(list(host_folder.iterdir())) == loaded
    # The small models were the least recently used, so the big ones evicted them: each loads
    # again, from a folder of its own, and still answers right.
    for name in small:
        assert _invoke(runtime, "mme", name, rows) == expected[name]
        assert server.log().count(f"model {name} loaded into container") == 2, name
    assert sagemaker.describe_endpoint(EndpointName="mme")["EndpointStatus"] == "InService"
    assert running.id == _container_of(docker_client, server, "mme").id  # never restarted


def _mme_model(sagemaker: Any, name: str, image: str) -> None:
    create_model(
        sagemaker,
        name,
        [{"Image": image, "Mode": "MultiModel", "ModelDataUrl": "s3://b/p/"}],
    )


def test_an_image_of_ones_own_serves_many_models_only_with_the_label(
    docker_client: Any, server: PolyhostProcess
) -> None:
    import docker.errors

    stream = docker_client.api.build(
        path=str(BYO_CONTEXT),
        tag=LABELLED_IMAGE,
        labels={ACCEPT_BIND_TO_PORT: "true", MULTI_MODELS: "true"},
        network_mode="host",
        rm=True,
        pull=False,
        decode=True,
        buildargs={"BASE_IMAGE": docker_env.base_image()},
    )
    follow(stream, lambda _: None, LABELLED_IMAGE)
    sagemaker = server.sagemaker()

    # On the daemon without the label: CreateModel refuses, as SageMaker does.
    with pytest.raises(ClientError) as caught:
        _mme_model(sagemaker, "byo-plain", BYO_IMAGE)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert "serves multiple models" in caught.value.response["Error"]["Message"]

    # With the label: taken, and its container starts in multi-model mode.
    _mme_model(sagemaker, "byo-mme", LABELLED_IMAGE)
    create_config(sagemaker, "byo-mme", [("AllTraffic", "byo-mme", 1, 1.0)])
    sagemaker.create_endpoint(EndpointName="byo-mme", EndpointConfigName="byo-mme")
    described = wait_status(sagemaker, "byo-mme", timeout=START_S)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")

    # Not on the daemon at CreateModel: taken, and its label is checked when it starts.
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_client.api.remove_image(LATE_IMAGE)
    _mme_model(sagemaker, "byo-late", LATE_IMAGE)
    try:
        docker_client.images.get(BYO_IMAGE).tag(*LATE_IMAGE.split(":"))
        create_config(sagemaker, "byo-late", [("AllTraffic", "byo-late", 1, 1.0)])
        sagemaker.create_endpoint(EndpointName="byo-late", EndpointConfigName="byo-late")
        described = wait_status(sagemaker, "byo-late", timeout=START_S)
        assert described["EndpointStatus"] == "Failed"
        assert f"{MULTI_MODELS}=true" in described["FailureReason"]
    finally:
        docker_client.api.remove_image(LATE_IMAGE, force=True)
    for name in ("byo-mme", "byo-late"):
        sagemaker.delete_endpoint(EndpointName=name)
