"""The Ray backend against a real 3-node Ray cluster on loopback addresses (127.0.0.2-4).

One cluster and one `polyhost serve --backend ray` for the module: placement (one instance per
node, Direct and Serial), a reservation no node can hold, logs of remote containers, blue/green
update under load, and a delete that leaves nothing running on the cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.backends.ray_fixtures import RayCluster, echo_containers_by_node
from tests.support.endpoints import create_config, create_model, deploy, echo_container, invoke
from tests.support.server import CONTAINERS, PolyhostProcess, write_image_config

pytest.importorskip("ray")

BIG_IMAGE = "polyhost-test/big:1"


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    started = RayCluster().start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def server(cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    base: Path = tmp_path_factory.mktemp("ray")
    images = write_image_config(base / "images.toml")
    with open(images, "a", encoding="utf-8") as config:  # an image no node can hold
        config.write(
            f'[images."{BIG_IMAGE}"]\ncommand = ["{sys.executable}", '
            f'"{CONTAINERS / "echo_server.py"}"]\ncpus = 8\n'
        )
    process = PolyhostProcess(
        state_dir=base / "state",
        image_config=images,
        extra_args=["--backend", "ray", "--ray-address", cluster.address],
    ).start(timeout=60)
    yield process
    process.stop()


@pytest.fixture(scope="module")
def sagemaker(server: PolyhostProcess) -> Any:
    return server.sagemaker()


@pytest.fixture(scope="module")
def runtime(server: PolyhostProcess) -> Any:
    return server.runtime()


def test_instances_spread_one_per_node_direct(
    cluster: RayCluster, sagemaker: Any, runtime: Any
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
        node: ["a", "b"] for node in cluster.addresses
    }, by_node
    answers = {
        invoke(runtime, "spread", b"x", TargetContainerHostname=h, CustomAttributes="whoami=1")[0]
        for h in ("a", "b")
        for _ in range(9)
    }
    assert len(answers) == 6, answers  # 2 containers on each of 3 instances
    print(f"cold start of 3 instances on 3 nodes: {cold_start:.2f}s")


def test_instances_spread_one_per_node_serial(
    cluster: RayCluster, sagemaker: Any, runtime: Any
) -> None:
    described = deploy(
        sagemaker, "pipe", [echo_container("first"), echo_container("second")], instances=3
    )
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    by_node = echo_containers_by_node(cluster, "pipe")
    assert sorted(by_node) == sorted(cluster.addresses), by_node
    assert all(sorted(names) == ["first", "second"] for names in by_node.values()), by_node
    body, _ = invoke(runtime, "pipe", b"hello")
    assert body == b"second:first:hello"


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


class Load:
    """Steady invocations from a few threads; every failure is kept with its message."""

    def __init__(self, runtime: Any, endpoint: str, threads: int = 4, **kwargs: Any) -> None:
        self._runtime = runtime
        self._endpoint = endpoint
        self._kwargs = kwargs
        self._stop = threading.Event()
        self.ok = 0
        self.failures: list[str] = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                invoke(self._runtime, self._endpoint, b"load", **self._kwargs)
                self.ok += 1
            except ClientError as error:
                self.failures.append(str(error))
            time.sleep(0.005)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def test_update_endpoint_under_load_fails_no_request(
    cluster: RayCluster, sagemaker: Any, runtime: Any
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
    assert load.failures == []
    assert load.ok > 50
    described = sagemaker.describe_endpoint(EndpointName="blue")
    assert described["EndpointConfigName"] == "green"
    # The old revision's containers are gone from the cluster once drained.
    deadline = time.monotonic() + 20
    while sum(len(n) for n in echo_containers_by_node(cluster, "blue").values()) != 2:
        assert time.monotonic() < deadline, echo_containers_by_node(cluster, "blue")
        time.sleep(0.2)


def test_delete_endpoint_leaves_no_actor_group_or_process(
    cluster: RayCluster, server: PolyhostProcess, sagemaker: Any
) -> None:
    described = deploy(
        sagemaker, "gone", [echo_container("a"), echo_container("b")], "Direct", instances=2
    )
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert sum(len(n) for n in echo_containers_by_node(cluster, "gone").values()) == 4
    sagemaker.delete_endpoint(EndpointName="gone")
    deadline = time.monotonic() + 30
    while True:
        left = cluster_leftovers(cluster, server.state_dir, "gone")
        if left == {"actors": [], "groups": [], "containers": 0}:
            break
        assert time.monotonic() < deadline, left
        time.sleep(0.5)


def cluster_leftovers(cluster: RayCluster, state_dir: Path, endpoint: str) -> dict[str, Any]:
    """What of `endpoint` is still on the cluster: named actors, placement groups (asked of
    Ray by a separate driver), and container processes."""
    script = (
        "import json, sys, ray\n"
        "from polyhost.backends.ray_backend import namespace_of\n"
        "from pathlib import Path\n"
        "ray.init(address=sys.argv[1], namespace=namespace_of(Path(sys.argv[2])),\n"
        "         logging_level='ERROR', log_to_driver=False)\n"
        "actors = [n for n in ray.util.list_named_actors() if n.startswith(sys.argv[3] + '.')]\n"
        "groups = [g['name'] for g in ray.util.placement_group_table().values()\n"
        "          if g['state'] != 'REMOVED' and ('/' + sys.argv[3] + '.') in g['name']]\n"
        "print(json.dumps({'actors': actors, 'groups': groups}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, cluster.address, str(state_dir), endpoint],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    import json

    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    found["containers"] = sum(len(n) for n in echo_containers_by_node(cluster, endpoint).values())
    return found


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
