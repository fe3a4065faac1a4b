"""What the Ray backend's tests share: a server on the cluster, where containers run, a load.

The cluster itself is `tests.support.ray_cluster.LocalRayCluster` (3 nodes on 127.0.0.2-4, every
listener kept on loopback). The server runs as a driver of it, attached to the head's address
(`--ray-node-address`), in the cluster's driver environment.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
from botocore.exceptions import BotoCoreError, ClientError

from tests.support.endpoints import invoke
from tests.support.ray_cluster import LocalRayCluster
from tests.support.server import CONTAINERS, PolyhostProcess, write_image_config

BIG_IMAGE = "polyhost-test/big:1"  # 8 CPUs: larger than any node of the test cluster
WIDE_IMAGE = "polyhost-test/wide:1"  # 1.5 CPUs: one per node at most


def ray_server(cluster: LocalRayCluster, base: Path, *extra: str) -> PolyhostProcess:
    """A (not yet started) `polyhost serve --backend ray` on `cluster`, with the test images."""
    images = write_image_config(base / "images.toml")
    with open(images, "a", encoding="utf-8") as config:
        for image, cpus in ((BIG_IMAGE, 8), (WIDE_IMAGE, 1.5)):
            config.write(
                f'[images."{image}"]\ncommand = ["{sys.executable}", '
                f'"{CONTAINERS / "echo_server.py"}"]\ncpus = {cpus}\n'
            )
    return PolyhostProcess(
        state_dir=base / "state",
        image_config=images,
        extra_args=[
            "--backend",
            "ray",
            "--ray-address",
            cluster.address,
            "--ray-node-address",
            cluster.head.ip,
            *extra,
        ],
        env=cluster.driver_env(),
    )


def _echo_processes(cluster: LocalRayCluster, endpoint: str) -> dict[str, list[psutil.Process]]:
    """The test echo containers of `endpoint` on each live node: a container's folder on its
    node is named by its container id (`<endpoint>.r<revision>.<variant>.<instance>.<host>`)."""
    found: dict[str, list[psutil.Process]] = {}
    for node in cluster.live_nodes:
        for process in node.processes():
            try:
                if "echo_server.py" not in " ".join(process.cmdline()):
                    continue
                if f"/{endpoint}.r" not in process.cwd():
                    continue
            except psutil.Error:
                continue
            found.setdefault(node.ip, []).append(process)
    return found


def echo_containers_by_node(cluster: LocalRayCluster, endpoint: str) -> dict[str, list[str]]:
    """node address → the ECHO_NAME of each container of `endpoint` running there."""
    names: dict[str, list[str]] = {}
    for ip, processes in _echo_processes(cluster, endpoint).items():
        for process in processes:
            try:
                names.setdefault(ip, []).append(process.environ().get("ECHO_NAME", "?"))
            except psutil.Error:
                continue
    return names


def echo_pids(cluster: LocalRayCluster, endpoint: str) -> set[int]:
    return {p.pid for ps in _echo_processes(cluster, endpoint).values() for p in ps}


def container_count(cluster: LocalRayCluster, endpoint: str) -> int:
    return sum(len(ps) for ps in _echo_processes(cluster, endpoint).values())


def cluster_leftovers(cluster: LocalRayCluster, state_dir: Path, endpoint: str) -> dict[str, Any]:
    """What of `endpoint` is still on the cluster: its named agents and placement groups (asked
    of Ray by a separate driver in the server's namespace) and its container processes."""
    code = f"""
        import json
        from pathlib import Path
        from polyhost.backends.ray.backend import namespace_of
        namespace = namespace_of(Path({str(state_dir)!r}))
        actors = [n for n in ray.util.list_named_actors(all_namespaces=True)
                  if n["namespace"] == namespace and n["name"].startswith({endpoint!r} + ".")]
        groups = [g["name"] for g in ray.util.placement_group_table().values()
                  if g["state"] != "REMOVED" and ("/" + {endpoint!r} + ".") in g["name"]]
        print(json.dumps({{"actors": actors, "groups": groups}}))
    """
    output = cluster.run_driver(code)
    found: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    found["containers"] = container_count(cluster, endpoint)
    return found


def wait_until_nothing_left(
    cluster: LocalRayCluster, state_dir: Path, endpoint: str, timeout_s: float = 30.0
) -> None:
    """Until no agent, placement group or container of `endpoint` is left on the cluster;
    fails with what is still there after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (left := cluster_leftovers(cluster, state_dir, endpoint)) != {
        "actors": [],
        "groups": [],
        "containers": 0,
    }:
        assert time.monotonic() < deadline, left
        time.sleep(0.5)


class Load:
    """Steady invocations from a few threads; every failure is kept with its time and message,
    and the slowest request's duration too (a request stuck on a lost node would show there)."""

    def __init__(self, runtime: Any, endpoint: str, threads: int = 4, **kwargs: Any) -> None:
        self._runtime = runtime
        self._endpoint = endpoint
        self._kwargs = kwargs
        self._stop = threading.Event()
        self.ok = 0
        self.slowest_s = 0.0
        self.failures: list[tuple[float, str]] = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                invoke(self._runtime, self._endpoint, b"load", **self._kwargs)
                self.ok += 1
            except (ClientError, BotoCoreError) as error:
                self.failures.append((time.monotonic(), str(error)))
            self.slowest_s = max(self.slowest_s, time.monotonic() - started)
            time.sleep(0.005)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


def add_image(
    server: PolyhostProcess, image: str, *, cpus: float | None = None, memory: int | None = None
) -> None:
    """Register one more echo image in a not yet started server's images.toml, with its own
    `cpus` and `memory` (bytes): what an instance of it reserves on its node."""
    assert server.image_config is not None and server.process is None
    with open(server.image_config, "a", encoding="utf-8") as config:
        config.write(
            f'[images."{image}"]\ncommand = ["{sys.executable}", '
            f'"{CONTAINERS / "echo_server.py"}"]\n'
        )
        if cpus is not None:
            config.write(f"cpus = {cpus}\n")
        if memory is not None:
            config.write(f"memory = {memory}\n")


def echo_processes(cluster: LocalRayCluster, endpoint: str) -> list[psutil.Process]:
    """The echo container processes of `endpoint` on every live node."""
    return [p for ps in _echo_processes(cluster, endpoint).values() for p in ps]
