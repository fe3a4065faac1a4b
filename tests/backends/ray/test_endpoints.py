"""The Ray backend against a real 3-node Ray cluster on loopback addresses (127.0.0.2-4).

One cluster and one `polyhost serve --backend ray` for the module: placement (one instance per
node, Direct and Serial), a reservation no node can hold, logs of remote containers, blue/green
update under load, and a delete that leaves nothing running on the cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.backends.ray.fixtures import (
    BIG_IMAGE,
    WIDE_IMAGE,
    Load,
    container_count,
    echo_containers_by_node,
    echo_pids,
    ray_server,
    wait_until_nothing_left,
)
from tests.support.endpoints import create_config, create_model, deploy, echo_container, invoke
from tests.support.ray_cluster import LocalRayCluster, ray_installed
from tests.support.s3 import MotoS3, s3_server
from tests.support.server import ECHO_IMAGE, PolyhostProcess
from tests.support.waiting import eventually

__all__ = ["s3_server"]  # the fixture, used by name below

pytestmark = pytest.mark.skipif(not ray_installed(), reason="ray is not installed")


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, s3_server: MotoS3
) -> Iterator[LocalRayCluster]:
    """The nodes reach the test S3 with their own settings; the server has none of them."""
    with LocalRayCluster(
        nodes=3, tmp_path=tmp_path_factory.mktemp("cluster"), extra_env=s3_server.env()
    ) as started:
        yield started


@pytest.fixture(scope="module")
def server(cluster: LocalRayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    base = tmp_path_factory.mktemp("ray")
    process = ray_server(cluster, base, "--ray-placement-timeout", "3").start(timeout=60)
    yield process
    process.stop()


def test_instances_spread_one_per_node_direct(
    cluster: LocalRayCluster, sagemaker: Any, runtime: Any
) -> None:
    started = time.monotonic()
    described = deploy(
        sagemaker, "spread", [echo_container("a"), echo_container("b")], "Direct", instances=3
    )
    cold_start = time.monotonic() - started
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 3
    by_node = echo_containers_by_node(cluster, "spread")
    assert {node: sorted(names) for node, names in by_node.items()} == {
        node: ["a", "b"] for node in cluster.ips
    }, by_node
    answers = {
        invoke(runtime, "spread", b"x", TargetContainerHostname=h, CustomAttributes="whoami=1")[0]
        for h in ("a", "b")
        for _ in range(9)
    }
    assert len(answers) == 6, answers  # 2 containers on each of 3 instances
    print(f"cold start of 3 instances on 3 nodes: {cold_start:.2f}s")


def test_instances_spread_one_per_node_serial(
    cluster: LocalRayCluster, sagemaker: Any, runtime: Any
) -> None:
    described = deploy(
        sagemaker, "pipe", [echo_container("first"), echo_container("second")], instances=3
    )
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    by_node = echo_containers_by_node(cluster, "pipe")
    assert sorted(by_node) == sorted(cluster.ips), by_node
    assert all(sorted(names) == ["first", "second"] for names in by_node.values()), by_node
    body, _ = invoke(runtime, "pipe", b"hello")
    assert body == b"second:first:hello"


def test_added_instances_land_where_the_cluster_has_room(
    cluster: LocalRayCluster, sagemaker: Any, runtime: Any
) -> None:
    """UpdateEndpointWeightsAndCapacities (what Application Auto Scaling calls) grows a
    1-instance variant to 3 in place: the new instances are placed on the nodes with room (one
    per node, as at creation), the first one is not moved, and a shrink back to 1 leaves it."""
    described = deploy(sagemaker, "grow", [echo_container("a")])
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    (first_node,) = echo_containers_by_node(cluster, "grow")

    def resize(count: int) -> dict[str, Any]:
        sagemaker.update_endpoint_weights_and_capacities(
            EndpointName="grow",
            DesiredWeightsAndCapacities=[
                {"VariantName": "AllTraffic", "DesiredInstanceCount": count}
            ],
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found: dict[str, Any] = sagemaker.describe_endpoint(EndpointName="grow")
            variant = found["ProductionVariants"][0]
            if found["EndpointStatus"] == "InService" and variant["CurrentInstanceCount"] == count:
                return found
            time.sleep(0.1)
        raise AssertionError(f"grow did not reach {count} instances: {found}")

    resize(3)
    by_node = echo_containers_by_node(cluster, "grow")
    assert sorted(by_node) == sorted(cluster.ips), by_node
    answers = {invoke(runtime, "grow", b"x", CustomAttributes="whoami=1")[0] for _ in range(12)}
    assert len(answers) == 3, answers
    resize(1)
    # The removed instances drain, then stop: the first one is what is left.
    eventually(
        lambda: list(echo_containers_by_node(cluster, "grow")) == [first_node],
        "the removed instances to stop",
        timeout=60,
        interval=0.2,
    )
    sagemaker.delete_endpoint(EndpointName="grow")


def test_endpoint_too_big_for_any_node_fails_with_reason(sagemaker: Any) -> None:
    container = {"Image": BIG_IMAGE, "Environment": {"ECHO_NAME": "big"}}
    started = time.monotonic()
    described = deploy(sagemaker, "toobig", [container])
    assert time.monotonic() - started < 20
    assert described["EndpointStatus"] == "Failed"
    reason = described["FailureReason"]
    assert "asks for 8 CPU" in reason, reason
    assert "no node is that large" in reason, reason
    assert "largest node has 2 CPU" in reason, reason


def test_endpoint_the_cluster_has_no_room_for_fails_in_bounded_time(
    cluster: LocalRayCluster, server: PolyhostProcess, sagemaker: Any
) -> None:
    """4 instances of 1.5 CPU on 3 nodes of 2 CPU: a node holds one at most, so the 4th never
    fits; the deploy fails after --ray-placement-timeout (3 s here), and whatever instances it
    had placed are released."""
    container = {"Image": WIDE_IMAGE, "Environment": {"ECHO_NAME": "wide"}}
    started = time.monotonic()
    described = deploy(sagemaker, "nofit", [container], instances=4)
    assert time.monotonic() - started < 30
    assert described["EndpointStatus"] == "Failed"
    reason = described["FailureReason"]
    assert "asks for 1.5 CPU" in reason, reason
    assert "had no room for it within 3 seconds" in reason, reason
    assert "alive node(s)" in reason, reason
    wait_until_nothing_left(cluster, server.state_dir, "nofit")


def test_model_data_is_shipped_to_the_node_and_cached_by_content(
    cluster: LocalRayCluster, sagemaker: Any, runtime: Any, tmp_path: Path
) -> None:
    payload = tmp_path / "weights.txt"
    payload.write_text("w-123", encoding="utf-8")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(payload, arcname="weights.txt")
    container = {**echo_container("m"), "ModelDataUrl": f"file://{archive}"}
    described = deploy(sagemaker, "modelled", [container], instances=2)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    for _ in range(4):
        body, _ = invoke(runtime, "modelled", b"x", CustomAttributes="model-file=weights.txt")
        assert b"w-123" in body
    model_dirs = set()
    for pid in echo_pids(cluster, "modelled"):
        model_dirs.add(psutil.Process(pid).environ()["SM_MODEL_DIR"])
    (model_dir,) = model_dirs  # both nodes: the same content, the same cache folder name
    digest = Path(model_dir).name
    assert Path(model_dir).parent.name == "models" and len(digest) == 64


def test_container_failing_on_its_node_fails_the_endpoint_quoting_its_log(
    sagemaker: Any, cluster: LocalRayCluster, server: PolyhostProcess
) -> None:
    described = deploy(sagemaker, "broken", [echo_container("bad", ECHO_EXIT_AT_START="1")])
    assert described["EndpointStatus"] == "Failed"
    reason = described["FailureReason"]
    assert "exited with code 3" in reason, reason
    assert "bad: configured to fail at start" in reason, reason
    wait_until_nothing_left(cluster, server.state_dir, "broken")


def test_s3_model_data_is_fetched_by_the_node(
    cluster: LocalRayCluster,
    server: PolyhostProcess,
    sagemaker: Any,
    runtime: Any,
    s3_server: MotoS3,
    tmp_path: Path,
) -> None:
    assert "AWS_ENDPOINT_URL_S3" not in os.environ  # only the nodes know where this S3 is
    payload = tmp_path / "s3-weights.txt"
    payload.write_text("from-s3", encoding="utf-8")
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(payload, arcname="s3-weights.txt")
    bucket = s3_server.new_bucket()
    s3_server.put(bucket, "m/model.tar.gz", archive.read_bytes())
    container = {**echo_container("s"), "ModelDataUrl": f"s3://{bucket}/m/model.tar.gz"}
    described = deploy(sagemaker, "froms3", [container], instances=2)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    for _ in range(4):
        body, _ = invoke(runtime, "froms3", b"x", CustomAttributes="model-file=s3-weights.txt")
        assert b"from-s3" in body
    assert s3_server.count_requests("GET", f"/{bucket}/m/model.tar.gz") >= 1
    for pid in echo_pids(cluster, "froms3"):
        assert "/artifacts/" in psutil.Process(pid).environ()["SM_MODEL_DIR"]
    assert not list((server.state_dir / "artifacts").rglob("s3-weights.txt"))  # not the server


def test_node_that_cannot_get_the_model_fails_the_endpoint_with_reason(
    sagemaker: Any, s3_server: MotoS3
) -> None:
    bucket = s3_server.new_bucket()
    container = {**echo_container("s"), "ModelDataUrl": f"s3://{bucket}/missing.tar.gz"}
    described = deploy(sagemaker, "nos3", [container])
    assert described["EndpointStatus"] == "Failed"
    reason = described["FailureReason"]
    assert "Could not get the model data of container s for production variant AllTraffic" in (
        reason
    ), reason
    assert "on node 127.0.0." in reason, reason


def test_remote_container_logs_reach_the_server(
    server: PolyhostProcess, sagemaker: Any, runtime: Any
) -> None:
    deploy(sagemaker, "logged", [echo_container("talker")])
    invoke(runtime, "logged", b"x", CustomAttributes="say=shipped-from-the-node")
    log_file = next((server.state_dir / "containers" / "logged").rglob("container.log"))
    deadline = time.monotonic() + 10
    while b"shipped-from-the-node" not in log_file.read_bytes():
        assert time.monotonic() < deadline, log_file.read_bytes()
        time.sleep(0.1)


def test_update_endpoint_under_load_fails_no_request(
    cluster: LocalRayCluster, sagemaker: Any, runtime: Any
) -> None:
    described = deploy(sagemaker, "blue", [echo_container("m")], instances=2)
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    create_model(sagemaker, "green", [echo_container("m", ECHO_GREEN="1")])
    create_config(sagemaker, "green", [("AllTraffic", "green", 2, 1.0)])
    with Load(runtime, "blue") as load:
        time.sleep(0.5)
        sagemaker.update_endpoint(EndpointName="blue", EndpointConfigName="green")
        deadline = time.monotonic() + 60
        while sagemaker.describe_endpoint(EndpointName="blue")["EndpointStatus"] != "InService":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)
    assert [message for _, message in load.failures] == []
    assert load.ok > 50
    described = sagemaker.describe_endpoint(EndpointName="blue")
    assert described["EndpointConfigName"] == "green"
    # The old revision's containers are gone from the cluster once drained.
    deadline = time.monotonic() + 20
    while container_count(cluster, "blue") != 2:
        assert time.monotonic() < deadline, echo_containers_by_node(cluster, "blue")
        time.sleep(0.2)


def test_delete_endpoint_leaves_no_actor_group_or_process(
    cluster: LocalRayCluster, server: PolyhostProcess, sagemaker: Any
) -> None:
    described = deploy(
        sagemaker, "gone", [echo_container("a"), echo_container("b")], "Direct", instances=2
    )
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert container_count(cluster, "gone") == 4
    sagemaker.delete_endpoint(EndpointName="gone")
    wait_until_nothing_left(cluster, server.state_dir, "gone")


def test_ray_backend_without_ray_says_what_to_install(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no ray here')\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "polyhost", "serve", "--backend", "ray",
         "--state-dir", str(tmp_path / "state"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(shadow.parent)},
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "pip install 'polyhost[ray]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_ls_instances_lists_each_instance_with_its_node(
    cluster: LocalRayCluster, server: PolyhostProcess
) -> None:
    """`polyhost ls --instances` (test_instances_spread_one_per_node_direct deployed "spread")."""
    result = subprocess.run(
        [sys.executable, "-m", "polyhost", "ls", "--instances", "--url", server.url,
         "--admin-url", server.admin_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("ENDPOINT ")))
    assert lines[header].split() == [
        "ENDPOINT",
        "VARIANT",
        "INSTANCE",
        "NODE",
        "STATUS",
        "CONTAINERS",
    ]
    rows = [line.split() for line in lines[header + 1 :] if line.startswith("spread ")]
    assert [row[2] for row in rows] == ["i-0", "i-1", "i-2"]
    assert all(row[4] == "up" and row[5] == "a,b" for row in rows), rows
    nodes = {row[3] for row in rows}
    # CPU and memory of the remote containers reach the admin API (polled from their agents).
    deadline = time.monotonic() + 15
    while True:
        with urllib.request.urlopen(server.admin_url + "/api/containers", timeout=5) as answer:
            rows_api = [c for c in json.load(answer)["containers"] if c["endpoint"] == "spread"]
        if len(rows_api) == 6 and all((c.get("rss_bytes") or 0) > 0 for c in rows_api):
            break
        assert time.monotonic() < deadline, rows_api
        time.sleep(0.5)
    # The node column is the admin API's `node` of each container: one instance per node.
    assert nodes == set(cluster.ips), nodes
    assert {c["node"] for c in rows_api} == set(cluster.ips), rows_api


def test_unreachable_cluster_is_named_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "polyhost", "serve", "--backend", "ray",
         "--ray-address", "127.0.0.9:9", "--state-dir", str(tmp_path / "state"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "cannot reach the Ray cluster at 127.0.0.9:9" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--ray-placement-timeout", "0", "--ray-placement-timeout must be more than 0, not 0"),
        ("--ray-container-cpus", "-1", "--ray-container-cpus and --ray-container-memory must"),
    ],
)
def test_bad_ray_settings_are_refused_at_start(
    tmp_path: Path, flag: str, value: str, expected: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "polyhost", "serve", "--backend", "ray", flag, value,
         "--state-dir", str(tmp_path / "state"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_inference_component_copies_spread_over_the_nodes(
    cluster: LocalRayCluster, sagemaker: Any, runtime: Any
) -> None:
    """Each copy is an instance of the component's own: placed one per node first, as a
    variant's instances are, and each answers."""
    sagemaker.create_endpoint_config(
        EndpointConfigName="ray-shared",
        ProductionVariants=[
            {"VariantName": "AllTraffic", "InstanceType": "ml.m5.large", "InitialInstanceCount": 3}
        ],
    )
    sagemaker.create_endpoint(EndpointName="ray-shared", EndpointConfigName="ray-shared")
    sagemaker.create_inference_component(
        InferenceComponentName="ray-ic",
        EndpointName="ray-shared",
        VariantName="AllTraffic",
        Specification={
            "Container": {"Image": ECHO_IMAGE, "Environment": {"ECHO_NAME": "ic"}},
            "ComputeResourceRequirements": {
                "NumberOfCpuCoresRequired": 0.25,
                "MinMemoryRequiredInMb": 256,
            },
        },
        RuntimeConfig={"CopyCount": 3},
    )
    deadline = time.monotonic() + 120
    while True:
        found = sagemaker.describe_inference_component(InferenceComponentName="ray-ic")
        if found["InferenceComponentStatus"] not in ("Creating", "Updating"):
            break
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
    assert found["InferenceComponentStatus"] == "InService", found
    assert found["RuntimeConfig"]["CurrentCopyCount"] == 3
    by_node = echo_containers_by_node(cluster, "ic_ray-ic")
    assert {node: names for node, names in by_node.items()} == {
        node: ["ic"] for node in cluster.ips
    }, by_node
    answers = {
        runtime.invoke_endpoint(
            EndpointName="ray-shared",
            InferenceComponentName="ray-ic",
            Body=b"x",
            CustomAttributes="whoami=1",
        )["Body"].read()
        for _ in range(12)
    }
    assert len(answers) == 3
    sagemaker.delete_inference_component(InferenceComponentName="ray-ic")
    deadline = time.monotonic() + 60
    while container_count(cluster, "ic_ray-ic"):
        assert time.monotonic() < deadline, "copies still run after DeleteInferenceComponent"
        time.sleep(0.2)
    sagemaker.delete_endpoint(EndpointName="ray-shared")
