"""The local Ray cluster of the Ray backend's tests: on loopback only, real nodes, clean teardown.

The tests of `--backend ray` lean on tests/support/ray_cluster.py; these check that it gives
them what it promises: three `ray start` nodes on 127.0.0.2-4 and nothing listening beyond
loopback, tasks that really run on the node they were pinned to, a killed node that Ray declares
dead quickly, and a teardown that leaves no process and no folder, also when the test fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.ray_cluster import (
    LocalRayCluster,
    RayClusterError,
    is_loopback,
    listening_addresses,
    ray_installed,
)

pytestmark = pytest.mark.skipif(
    not ray_installed(), reason="ray is not installed: pip install 'polyhost[ray]'"
)

THREE = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
DEAD_NODE_BOUND_S = 10.0  # generous: the settings aim at ~1 s, a loaded machine may be slower


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    with LocalRayCluster(nodes=3, tmp_path=tmp_path_factory.mktemp("ray")) as started:
        print(f"\n3-node cluster started in {started.start_seconds:.1f} s")
        yield started
    print(f"\n3-node cluster stopped in {started.stop_seconds:.1f} s")


def test_three_nodes_register_on_their_own_loopback_addresses(cluster: LocalRayCluster) -> None:
    table = cluster.node_table()
    assert sorted(record.ip for record in table if record.alive) == THREE
    assert [record.ip for record in table if record.head] == ["127.0.0.2"]
    assert cluster.address.startswith("127.0.0.2:")
    assert {node.ip: node.node_id for node in cluster.live_nodes} == {
        record.ip: record.node_id for record in table
    }
    for node in cluster.live_nodes:
        assert node.raylet() is not None, node


def test_nothing_of_the_cluster_listens_beyond_loopback(cluster: LocalRayCluster) -> None:
    listening = listening_addresses(cluster.processes())
    addresses = {address for found in listening.values() for address in found}
    # The GCS, the raylets and object managers are among them: the scan sees real sockets.
    assert cluster.head.raylet_pid in listening
    assert {"::ffff:127.0.0.3", "::ffff:127.0.0.4"} <= addresses
    assert all(is_loopback(address) for address in addresses), listening


def test_a_pinned_task_runs_on_its_node_and_the_driver_stays_on_loopback(
    cluster: LocalRayCluster,
) -> None:
    answer = cluster.run_driver(
        """
        import json, os, psutil
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        @ray.remote(num_cpus=0.1)
        def where():
            return ray.util.get_node_ip_address(), os.getppid()

        placed = {}
        for node in ray.nodes():
            pinned = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            placed[node["NodeID"]] = ray.get(where.options(scheduling_strategy=pinned).remote())
        sockets = psutil.Process().net_connections("inet")
        mine = [c.laddr.ip for c in sockets if c.status == "LISTEN"]
        print(json.dumps({"placed": placed, "driver": mine}))
        """
    )
    report = json.loads(answer.strip().splitlines()[-1])
    expected = {node.node_id: node.ip for node in cluster.live_nodes}
    assert {node_id: ip for node_id, (ip, _) in report["placed"].items()} == expected
    for node in cluster.live_nodes:  # the task ran in a worker started by that node's raylet
        assert report["placed"][node.node_id][1] == node.raylet_pid
    assert report["driver"] and all(is_loopback(a) for a in report["driver"]), report["driver"]
    cluster.assert_loopback_only()  # the workers the tasks started, too


def test_a_killed_node_is_declared_dead_quickly_and_a_new_node_joins(
    cluster: LocalRayCluster,
) -> None:
    victim = cluster.node("127.0.0.4")
    before = {process.pid for process in victim.processes()}
    assert victim.raylet_pid in before
    killed = cluster.kill_node("127.0.0.4")
    assert before <= set(killed.pids)
    assert not any(psutil.pid_exists(pid) and _alive(pid) for pid in killed.pids)
    assert victim.processes() == []
    seconds = cluster.wait_node_dead("127.0.0.4", timeout=DEAD_NODE_BOUND_S)
    print(f"\nnode loss noticed by the GCS {seconds:.2f} s after SIGKILL")
    alive = cluster.wait_nodes(alive=2, timeout=DEAD_NODE_BOUND_S)
    assert sorted(record.ip for record in alive) == THREE[:2]
    with pytest.raises(ValueError, match="head"):
        cluster.kill_node("127.0.0.2")

    added = cluster.add_node()
    assert added.ip == "127.0.0.5"
    assert sorted(record.ip for record in cluster.wait_nodes(alive=3)) == [*THREE[:2], added.ip]
    assert added.raylet() is not None


def test_teardown_leaves_no_process_and_no_folder_even_when_the_test_fails(
    tmp_path: Path,
) -> None:
    cluster = LocalRayCluster(nodes=2, tmp_path=tmp_path)
    with pytest.raises(RuntimeError, match="the test failed"), cluster:
        cluster.run_driver(
            """
            @ray.remote(num_cpus=0.1)
            class Kept:
                def ping(self):
                    return 1
            kept = Kept.options(name="kept", lifetime="detached").remote()
            ray.get(kept.ping.remote())
            """
        )
        pids = {process.pid for process in cluster.processes()}
        assert len(pids) >= 6  # GCS, 2 raylets, agents, workers, the detached actor
        raise RuntimeError("the test failed")
    print(f"\n2 nodes: start {cluster.start_seconds:.1f} s, stop {cluster.stop_seconds:.1f} s")
    assert not cluster.root.exists()
    assert not any(_alive(pid) for pid in pids)
    leftovers = []
    for process in psutil.process_iter(["cmdline"]):
        if str(cluster.root) in " ".join(process.info["cmdline"] or ()):
            leftovers.append(process)
    assert leftovers == []
    assert cluster.processes() == []
    assert (tmp_path / "ray-logs" / "127.0.0.2" / "raylet.out").is_file()  # kept for the reader


def test_a_driver_failure_is_reported_with_its_output(cluster: LocalRayCluster) -> None:
    with pytest.raises(RayClusterError, match="ZeroDivisionError"):
        cluster.run_driver("1 / 0")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
