"""Multi-model endpoints on the Ray backend, against a real 3-node Ray cluster on loopback
addresses (127.0.0.2-4): models on a local S3, fetched by the server, shipped to the node of the
container that loads them.

A bring-your-own multi-model container (tests/support/containers/forgetful_models.py) says
which process answered, where it was told its model is and what the model's file held: each
model is read from a folder on its container's node (not the server's cache), loaded once per
instance, its folder removed when it is unloaded, when the container restarts and when it
stops. The built-in `polyhost/sklearn` stack answers with the right predictions on two
instances. A model too large to ship fails its load naming the model.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import psutil
import pytest
from botocore.exceptions import ClientError
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from tests.backends.ray.fixtures import ray_server
from tests.support.endpoints import deploy
from tests.support.ray_cluster import LocalRayCluster, ray_installed
from tests.support.s3 import MotoS3, s3_server
from tests.support.server import PolyhostProcess
from tests.support.waiting import eventually

__all__ = ["s3_server"]  # the fixture, used by name below

pytestmark = pytest.mark.skipif(not ray_installed(), reason="ray is not installed")

IMAGE = "polyhost-test/forgetful-models:1"
MODELS = 4
MAX_MODEL_BYTES = 64 * 1024  # the server's --model-max-bytes: "many-files" packs larger
PROGRAM = Path(__file__).parents[2] / "support" / "containers" / "forgetful_models.py"


def _archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _sklearn_archive(estimator: Any) -> bytes:
    data = io.BytesIO()
    joblib.dump(estimator, data)
    return _archive({"model.joblib": data.getvalue()})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    """The nodes get no S3 settings: the server fetches every model, the nodes never do."""
    with LocalRayCluster(nodes=3, tmp_path=tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture(scope="module")
def rows() -> list[list[float]]:
    rows: list[list[float]] = load_digits().data[1500:1504].astype(np.float32).tolist()
    return rows


@pytest.fixture(scope="module")
def prefix(s3_server: MotoS3, rows: list[list[float]]) -> tuple[str, dict[str, list[int]]]:
    """s3://bucket/m/: MODELS forgetful models (weights.bin says which), one made of many tiny
    files (small extracted, larger than MAX_MODEL_BYTES packed), and sklearn digit models with
    their expected predictions for `rows`."""
    bucket = s3_server.new_bucket()
    for index in range(MODELS):
        s3_server.put(bucket, f"m/model{index}.tar.gz", _archive({"weights.bin": b"w%d" % index}))
    tiny = {f"part{index:03d}.bin": b"x" for index in range(120)}
    s3_server.put(bucket, "m/many-files.tar.gz", _archive(tiny))
    data = load_digits()
    x, y = data.data.astype(np.float32), data.target
    expected: dict[str, list[int]] = {}
    for index in range(3):
        keep = (y != index) | (np.arange(len(y)) % 2 == 0)  # each model answers differently
        estimator = LogisticRegression(max_iter=300).fit(x[keep][:600], y[keep][:600])
        name = f"digits/d{index}.tar.gz"
        s3_server.put(bucket, f"m/{name}", _sklearn_archive(estimator))
        expected[name] = estimator.predict(np.asarray(rows)).tolist()
    return f"s3://{bucket}/m/", expected


@pytest.fixture(scope="module")
def server(
    cluster: LocalRayCluster, s3_server: MotoS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PolyhostProcess]:
    base = tmp_path_factory.mktemp("ray-mme")
    process = ray_server(cluster, base, "--model-max-bytes", str(MAX_MODEL_BYTES))
    assert process.image_config is not None
    with process.image_config.open("a", encoding="utf-8") as config:
        config.write(
            f'[images."{IMAGE}"]\ncommand = ["{sys.executable}", "{PROGRAM}"]\n'
            "multi_models = true\n"
        )
    process.env.update(s3_server.env())  # the server fetches; the nodes have no S3 settings
    process.start(timeout=60)
    yield process
    process.stop()


def _mme(prefix: str, cache: str = "Enabled") -> dict[str, Any]:
    return {
        "Image": IMAGE,
        "Mode": "MultiModel",
        "ModelDataUrl": prefix,
        "MultiModelConfig": {"ModelCacheSetting": cache},
    }


def _invoke(runtime: Any, endpoint: str, target: str) -> dict[str, Any]:
    answer = runtime.invoke_endpoint(
        EndpointName=endpoint, Body=b"where", ContentType="text/plain", TargetModel=target
    )
    document: dict[str, Any] = json.loads(answer["Body"].read())
    return document


def _node_of(cluster: LocalRayCluster, pid: int) -> str:
    for node in cluster.live_nodes:
        if pid in {process.pid for process in node.processes()}:
            return node.ip
    raise AssertionError(f"process {pid} runs on no node of the cluster")


def _staged(models_dir: Path) -> list[str]:
    """The model folders staged in a container's model folder on its node."""
    return sorted(child.name for child in models_dir.iterdir()) if models_dir.is_dir() else []


def _loaded_per_container(server: PolyhostProcess, endpoint: str) -> list[int]:
    with urllib.request.urlopen(server.admin_url + "/api/containers", timeout=30) as answer:
        containers = json.loads(answer.read())["containers"]
    return sorted(int(c["loaded_models"]) for c in containers if c["endpoint"] == endpoint)


def _restarts(server: PolyhostProcess, endpoint: str) -> tuple[int, bool]:
    """(restarts of the endpoint's containers, whether all are up)."""
    with urllib.request.urlopen(server.admin_url + "/api/containers", timeout=30) as answer:
        containers = json.loads(answer.read())["containers"]
    ours = [c for c in containers if c["endpoint"] == endpoint]
    return sum(int(c["restarts"]) for c in ours), bool(ours) and all(c["up"] for c in ours)


def test_models_load_once_per_instance_from_their_node_and_go_with_the_container(
    cluster: LocalRayCluster,
    server: PolyhostProcess,
    sagemaker: Any,
    runtime: Any,
    prefix: tuple[str, dict[str, list[int]]],
) -> None:
    described = deploy(sagemaker, "mme-ray", [_mme(prefix[0])], instances=2)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(3):
        for index in range(MODELS):
            target = f"model{index}.tar.gz"
            answer = _invoke(runtime, "mme-ray", target)
            # Its own file, read where the container was told: loaded once, on one instance.
            assert answer["model"] == target and answer["weights"] == f"w{index}", answer
            assert answer["loads"] == 1, answer
            first = seen.setdefault(target, answer)
            assert (answer["pid"], answer["url"]) == (first["pid"], first["url"]), answer
    pids = {answer["pid"] for answer in seen.values()}
    assert len(pids) == 2, seen  # placement spread the models over both instances
    assert len({_node_of(cluster, pid) for pid in pids}) == 2  # on two nodes
    state_dir = str(server.state_dir.resolve())
    by_container: dict[Path, list[str]] = {}
    for answer in seen.values():
        url = Path(answer["url"])
        assert not answer["url"].startswith(state_dir), answer  # not the server's cache
        assert url.is_dir() and (url / "weights.bin").is_file(), answer
        by_container.setdefault(url.parents[1], []).append(url.parent.name)
    # Each container's model folder on its node holds the models it loaded, and nothing else.
    assert len(by_container) == 2, by_container
    for models_dir, names in by_container.items():
        assert _staged(models_dir) == sorted(names), models_dir
    assert _loaded_per_container(server, "mme-ray") == sorted(len(n) for n in by_container.values())

    # A restart: the container's folder is emptied, and its models load again, fresh. No call
    # is made until it is back, so its models do not move to the other instance meanwhile.
    victim = seen["model0.tar.gz"]
    victim_dir = Path(victim["url"]).parents[1]
    os.kill(victim["pid"], signal.SIGKILL)
    eventually(
        lambda: _restarts(server, "mme-ray") == (1, True),
        "the container to be restarted and up",
        timeout=60,
        interval=0.2,
    )
    assert _staged(victim_dir) == []  # emptied as it started again
    # The same instance again: a model no instance holds goes to its own first choice.
    again = _invoke(runtime, "mme-ray", "model0.tar.gz")
    assert again["pid"] != victim["pid"] and again["loads"] == 1, again
    assert again["weights"] == "w0" and again["url"] != victim["url"], again
    assert Path(again["url"]).parents[1] == victim_dir  # the same container's folder
    assert _staged(victim_dir) == [Path(again["url"]).parent.name]
    others = [a for a in seen.values() if a["pid"] != victim["pid"]]
    assert others and all(Path(a["url"]).is_dir() for a in others)  # the other instance's stay

    # Its stop: DeleteEndpoint leaves no model on any node.
    sagemaker.delete_endpoint(EndpointName="mme-ray")
    eventually(
        lambda: all(_staged(d) == [] for d in by_container),
        "the stopped containers' model folders to be emptied",
        timeout=60,
        interval=0.2,
    )


def test_an_unloaded_model_leaves_its_node(
    server: PolyhostProcess, sagemaker: Any, runtime: Any, prefix: tuple[str, dict[str, list[int]]]
) -> None:
    """ModelCacheSetting Disabled: each model is unloaded once its call is answered, and its
    folder on the node goes with it; the next call loads it again into a new one."""
    described = deploy(sagemaker, "mme-ray-once", [_mme(prefix[0], "Disabled")])
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    first = _invoke(runtime, "mme-ray-once", "model1.tar.gz")
    assert first["weights"] == "w1" and first["loads"] == 1, first
    models_dir = Path(first["url"]).parents[1]
    eventually(lambda: _staged(models_dir) == [], "the unloaded model's folder to go", timeout=30)
    second = _invoke(runtime, "mme-ray-once", "model1.tar.gz")
    assert second["loads"] == 2 and second["weights"] == "w1", second
    assert second["url"] != first["url"] and second["pid"] == first["pid"], second
    eventually(lambda: _staged(models_dir) == [], "the second copy to go too", timeout=30)
    sagemaker.delete_endpoint(EndpointName="mme-ray-once")


def test_a_model_too_large_to_ship_fails_its_load_naming_it(
    server: PolyhostProcess, sagemaker: Any, runtime: Any, prefix: tuple[str, dict[str, list[int]]]
) -> None:
    described = deploy(sagemaker, "mme-ray-big", [_mme(prefix[0])])
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    started = time.monotonic()
    with pytest.raises(ClientError) as caught:
        _invoke(runtime, "mme-ray-big", "many-files.tar.gz")
    error = caught.value.response
    assert error["Error"]["Code"] == "ModelError", error
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 424
    message = error["Error"]["Message"]
    assert "many-files.tar.gz" in message and f"larger than {MAX_MODEL_BYTES} bytes" in message
    assert time.monotonic() - started < 30
    # The endpoint goes on serving the others.
    assert _invoke(runtime, "mme-ray-big", "model2.tar.gz")["weights"] == "w2"
    sagemaker.delete_endpoint(EndpointName="mme-ray-big")


def test_the_sklearn_stack_answers_from_models_on_its_nodes(
    server: PolyhostProcess,
    sagemaker: Any,
    runtime: Any,
    rows: list[list[float]],
    prefix: tuple[str, dict[str, list[int]]],
) -> None:
    url, expected = prefix
    container = {"Image": "polyhost/sklearn", "Mode": "MultiModel", "ModelDataUrl": url}
    described = deploy(sagemaker, "mme-ray-digits", [container], instances=2)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    for _ in range(2):
        for target, predictions in expected.items():
            answer = runtime.invoke_endpoint(
                EndpointName="mme-ray-digits",
                Body=json.dumps(rows),
                ContentType="application/json",
                TargetModel=target,
            )
            assert json.loads(answer["Body"].read()) == predictions, target
    loaded = _loaded_per_container(server, "mme-ray-digits")
    assert len(loaded) == 2 and sum(loaded) == len(expected), loaded  # each model once
    sagemaker.delete_endpoint(EndpointName="mme-ray-digits")


def test_no_container_process_of_these_endpoints_is_left(cluster: LocalRayCluster) -> None:
    def left() -> list[int]:
        return [
            process.pid
            for node in cluster.live_nodes
            for process in node.processes()
            if _is_ours(process)
        ]

    eventually(lambda: left() == [], "the containers to stop", timeout=60, interval=0.2)


def _is_ours(process: psutil.Process) -> bool:
    try:
        return "/mme-ray" in process.cwd()
    except psutil.Error:
        return False
