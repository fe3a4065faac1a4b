"""The Ray backend when things fail: a crashed container, a killed server, a lost node.

A real 3-node Ray cluster on loopback addresses (127.0.0.2-4) and a real server for the module.
The node is killed last: it takes one of the cluster's nodes for good.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from botocore.exceptions import ClientError

from tests.backends.ray.fixtures import (
    Load,
    container_count,
    echo_containers_by_node,
    echo_pids,
    ray_server,
    wait_until_nothing_left,
)
from tests.support.endpoints import deploy, echo_container, invoke, wait_status
from tests.support.ray_cluster import LocalRayCluster, ray_installed
from tests.support.server import PolyhostProcess

pytestmark = pytest.mark.skipif(not ray_installed(), reason="ray is not installed")

LOST_NODE = "127.0.0.3"
LOAD_THREADS = 4


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    with LocalRayCluster(nodes=3, tmp_path=tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture(scope="module")
def server(
    cluster: LocalRayCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PolyhostProcess]:
    process = ray_server(cluster, tmp_path_factory.mktemp("ray")).start(timeout=60)
    yield process
    process.stop()


def _quietly(call: Any, *args: Any, **kwargs: Any) -> None:
    with contextlib.suppress(Exception):
        call(*args, **kwargs)


def _instance_count(sagemaker: Any, name: str) -> int:
    described = sagemaker.describe_endpoint(EndpointName=name)
    return int(described["ProductionVariants"][0]["CurrentInstanceCount"])


def test_crashed_container_is_restarted_on_its_node(
    cluster: LocalRayCluster, server: PolyhostProcess
) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    described = deploy(sagemaker, "crashy", [echo_container("c")])
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    (node, names), *_ = echo_containers_by_node(cluster, "crashy").items()
    before = echo_pids(cluster, "crashy")
    with pytest.raises(Exception):  # noqa: B017 - the crash ends the call one way or another
        invoke(runtime, "crashy", b"x", CustomAttributes="crash=1")
    deadline = time.monotonic() + 30
    while True:
        try:
            body, _ = invoke(runtime, "crashy", b"back")
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert body == b"c:back"
    assert list(echo_containers_by_node(cluster, "crashy")) == [node]
    assert echo_pids(cluster, "crashy").isdisjoint(before)
    assert names == ["c"]


def test_killed_agent_is_replaced_and_its_orphans_stopped(
    cluster: LocalRayCluster, server: PolyhostProcess
) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    described = deploy(sagemaker, "agentless", [echo_container("solo")])
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    (old_pid,) = echo_pids(cluster, "agentless")
    agent = psutil.Process(old_pid).parent()
    assert agent is not None and "InstanceAgent" in " ".join(agent.cmdline())
    agent.send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        try:
            body, _ = invoke(runtime, "agentless", b"x")
            pids = echo_pids(cluster, "agentless")
            if pids and old_pid not in pids:
                break
        except Exception:
            pass
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.2)
    assert body == b"solo:x"
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == "zombie"
    assert len(echo_pids(cluster, "agentless")) == 1
    assert _instance_count(sagemaker, "agentless") == 1


def test_restarted_server_adopts_running_instances(
    cluster: LocalRayCluster, server: PolyhostProcess
) -> None:
    sagemaker = server.sagemaker()
    described = deploy(
        sagemaker, "kept", [echo_container("a"), echo_container("b")], "Direct", instances=3
    )
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    pids = echo_pids(cluster, "kept")
    assert len(pids) == 6
    # "dropped" is deleted while a request holds it (it drains, its instance still placed)
    # when the server is killed: nothing claims it after the restart, so it is stopped then.
    dropped = deploy(sagemaker, "dropped", [echo_container("d")])
    assert dropped["EndpointStatus"] == "InService", dropped.get("FailureReason")
    runtime = server.runtime()
    held = threading.Thread(
        target=_quietly,
        args=(invoke, runtime, "dropped", b"x"),
        kwargs={"CustomAttributes": f"hold={server.state_dir / 'never'}"},
        daemon=True,
    )
    held.start()
    time.sleep(0.5)
    sagemaker.delete_endpoint(EndpointName="dropped")
    time.sleep(0.3)
    assert container_count(cluster, "dropped") == 1  # still draining
    server.kill9()
    server.start(timeout=60)
    sagemaker, runtime = server.sagemaker(), server.runtime()
    described = wait_status(sagemaker, "kept", timeout=60)
    deadline = time.monotonic() + 30
    while True:
        try:
            answers = {
                invoke(runtime, "kept", b"x", TargetContainerHostname=h, CustomAttributes=a)[0]
                for h in ("a", "b")
                for a in ("whoami=1",) * 9
            }
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert len(answers) == 6
    assert echo_pids(cluster, "kept") == pids  # the same processes: adopted, not restarted
    wait_until_nothing_left(cluster, server.state_dir, "dropped")
    assert "stopped instances nothing claims: dropped.r" in server.log()
    assert server.log().count("adopted container kept.") == 6
    assert _instance_count(sagemaker, "kept") == 3


def test_another_server_on_the_cluster_leaves_this_ones_instances_alone(
    cluster: LocalRayCluster, server: PolyhostProcess, tmp_path: Path
) -> None:
    """Each server has its own Ray namespace (from its state folder): a second server's start-up
    clean-up, which stops every instance nothing claims, sees none of the first one's."""
    pids = echo_pids(cluster, "kept")  # test_restarted_server_adopts_running_instances
    assert len(pids) == 6
    other = ray_server(cluster, tmp_path).start(timeout=60)
    try:
        deadline = time.monotonic() + 20
        while "no instance left by a previous run needs stopping" not in other.log():
            assert time.monotonic() < deadline, other.log()[-3000:]
            time.sleep(0.2)
        assert echo_pids(cluster, "kept") == pids
        body, _ = invoke(server.runtime(), "kept", b"x", TargetContainerHostname="a")
        assert body == b"a:x"
        assert "previous run left unclaimed" not in other.log()
    finally:
        other.stop()
    assert echo_pids(cluster, "kept") == pids


def test_lost_node_is_withdrawn_and_its_instance_placed_again(
    cluster: LocalRayCluster, server: PolyhostProcess
) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    described = deploy(
        sagemaker, "steady", [echo_container("first"), echo_container("second")], instances=3
    )
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert sorted(echo_containers_by_node(cluster, "steady")) == sorted(cluster.ips)
    with Load(runtime, "steady", threads=LOAD_THREADS) as load:
        time.sleep(1.0)
        served_before = load.ok
        killed = cluster.kill_node(LOST_NODE)
        dip = back = None
        deadline = time.monotonic() + 90
        while back is None:
            assert time.monotonic() < deadline, (dip, server.log()[-3000:])
            count = _instance_count(sagemaker, "steady")
            if dip is None and count == 2:
                dip = time.monotonic() - killed.at
            if dip is not None and count == 3:
                back = time.monotonic() - killed.at
            time.sleep(0.05)
        time.sleep(1.0)
    assert served_before > 0
    assert load.slowest_s < 10, (load.slowest_s, server.log()[-5000:])
    # Only requests that were on the lost node when it went may fail: at most one per client
    # thread (each waits on its own request), each a 503 naming the node.
    failures = [message for _, message in load.failures]
    assert len(failures) <= LOAD_THREADS, failures
    assert all("ServiceUnavailable" in f and LOST_NODE in f for f in failures), failures
    assert all(at - killed.at < dip + 0.5 for at, _ in load.failures)
    assert load.ok > served_before + 50
    by_node = echo_containers_by_node(cluster, "steady")
    assert LOST_NODE not in by_node
    assert container_count(cluster, "steady") == 6
    body, _ = invoke(runtime, "steady", b"again")
    assert body == b"second:first:again"
    print(
        f"node loss: CurrentInstanceCount dipped {dip:.2f}s and was back {back:.2f}s after "
        f"the kill; {len(failures)} failed request(s) of {load.ok + len(failures)}"
    )


def test_request_in_flight_on_a_lost_node_gets_a_503_naming_it(
    cluster: LocalRayCluster, server: PolyhostProcess
) -> None:
    """A one-instance endpoint on a fresh node (the freest, so it goes there): its node is lost
    while a request is in the container; with no other instance to send it to, the caller gets
    a 503 that names the node."""
    node = cluster.add_node()
    sagemaker, runtime = server.sagemaker(), server.runtime()
    described = deploy(sagemaker, "lonely", [echo_container("only")])
    assert described["EndpointStatus"] == "InService", described.get("FailureReason")
    assert list(echo_containers_by_node(cluster, "lonely")) == [node.ip]
    outcome: list[str] = []

    def call() -> None:
        try:
            invoke(runtime, "lonely", b"x", CustomAttributes="sleep=5")
            outcome.append("answered")
        except ClientError as error:
            outcome.append(str(error))

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(1.0)
    cluster.kill_node(node.ip)
    caller.join(timeout=30)
    (message,) = outcome
    assert "ServiceUnavailable" in message and node.ip in message, message
    assert "was lost" in message, message
