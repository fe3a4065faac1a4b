"""A real 3-node Ray cluster on this machine, every node on its own loopback address.

Each node is a `ray start` with `--node-ip-address 127.0.0.N` (Ray would otherwise pick the
machine's external interface, even in place of 127.0.0.1), small CPU and memory, no dashboard,
and a short temporary folder of its own (Ray's socket paths have a length limit). Teardown kills
exactly this cluster's processes (found by their session folder), never `ray stop`, which would
stop every Ray process of the machine, other people's included.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

RAY = Path(sys.executable).parent / "ray"
NODE_ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
# The GCS notices a dead node within ~1.5 s (its defaults take ~30 s), so Ray frees the node's
# resources about when polyhost has withdrawn its instances.
FAST_HEALTH_CHECKS = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}


def _free_port(host: str = "127.0.0.2") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class RayCluster:
    cpus: float = 2
    memory_bytes: int = 4 * 1024 * 1024 * 1024
    addresses: tuple[str, ...] = NODE_ADDRESSES
    temp_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="phr", dir="/tmp")))
    port: int = 0
    killed: set[str] = field(default_factory=set)

    @property
    def address(self) -> str:
        return f"{self.addresses[0]}:{self.port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, **FAST_HEALTH_CHECKS, "RAY_USAGE_STATS_ENABLED": "0"}

    def start(self) -> RayCluster:
        self.port = _free_port(self.addresses[0])
        for index, node in enumerate(self.addresses):
            args = [
                str(RAY), "start",
                "--node-ip-address", node,
                "--num-cpus", f"{self.cpus:g}",
                "--memory", str(self.memory_bytes),
                "--object-store-memory", str(100 * 1024 * 1024),
                "--dashboard-agent-listen-port", str(_free_port(node)),
                "--disable-usage-stats",
            ]  # fmt: skip
            if index == 0:
                args += [
                    "--head",
                    "--port", str(self.port),
                    "--temp-dir", str(self.temp_dir),
                    "--include-dashboard=false",
                    "--dashboard-port", str(_free_port(node)),
                    "--ray-client-server-port", str(_free_port(node)),
                ]  # fmt: skip
            else:
                args += ["--address", self.address]
            done = subprocess.run(
                args, env=self.env(), capture_output=True, text=True, timeout=120, check=False
            )
            if done.returncode != 0:
                self.stop()
                raise RuntimeError(f"ray start {node} failed:\n{done.stdout}\n{done.stderr}")
        self.wait_nodes(len(self.addresses))
        return self

    def wait_nodes(self, count: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raylets = [p for p in self.processes() if _is_raylet(p)]
            if len(raylets) >= count:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the Ray cluster did not reach {count} nodes")

    def processes(self) -> list[psutil.Process]:
        """Every process of this cluster (its session folder is on their command line), with
        their descendants (Ray workers and the containers they started)."""
        marker = str(self.temp_dir)
        roots: list[psutil.Process] = []
        for process in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(process.info.get("cmdline") or [])
            if marker in cmdline:
                roots.append(process)
        return _with_descendants(roots)

    def node_processes(self, node: str) -> list[psutil.Process]:
        """The processes of one node: its raylet and the processes started for it, and all
        their descendants (workers, and the containers the agents started)."""
        roots = []
        for process in self.processes():
            try:
                cmdline = " ".join(process.cmdline())
            except psutil.Error:
                continue
            if f"--node-ip-address={node}" in cmdline or f"--node_ip_address={node}" in cmdline:
                roots.append(process)
        return _with_descendants(roots)

    def kill_node(self, node: str) -> list[int]:
        """SIGKILL a node's processes at once, as if its machine went away; returns the pids."""
        victims = self.node_processes(node)
        for process in victims:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGKILL)
        self.killed.add(node)
        return [p.pid for p in victims]

    def stop(self) -> None:
        victims = self.processes()
        for process in victims:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGKILL)
        psutil.wait_procs(victims, timeout=10)


def _is_raylet(process: psutil.Process) -> bool:
    try:
        return process.name() == "raylet" or "/raylet" in (process.cmdline() or [""])[0]
    except psutil.Error:
        return False


def _with_descendants(roots: list[psutil.Process]) -> list[psutil.Process]:
    found: dict[int, psutil.Process] = {}
    for root in roots:
        found.setdefault(root.pid, root)
        try:
            for child in root.children(recursive=True):
                found.setdefault(child.pid, child)
        except psutil.Error:
            continue
    own = os.getpid()
    return [p for p in found.values() if p.pid != own]


def echo_containers_by_node(cluster: RayCluster, endpoint: str) -> dict[str, list[str]]:
    """The test echo containers of `endpoint` running on each node (their ECHO_NAME), found
    among the node's processes: a container's folder on its node is named by its container id
    (`<endpoint>.r<revision>.<variant>.<instance>.<hostname>`)."""
    found: dict[str, list[str]] = {}
    for node in cluster.addresses:
        if node in cluster.killed:
            continue
        for process in cluster.node_processes(node):
            try:
                if "echo_server.py" not in " ".join(process.cmdline()):
                    continue
                if f"/{endpoint}.r" not in process.cwd():
                    continue
                name = process.environ().get("ECHO_NAME", "?")
            except psutil.Error:
                continue
            found.setdefault(node, []).append(name)
    return found


def echo_pids(cluster: RayCluster, endpoint: str) -> set[int]:
    pids: set[int] = set()
    for node in cluster.addresses:
        if node in cluster.killed:
            continue
        for process in cluster.node_processes(node):
            try:
                if "echo_server.py" in " ".join(process.cmdline()) and (
                    f"/{endpoint}.r" in process.cwd()
                ):
                    pids.add(process.pid)
            except psutil.Error:
                continue
    return pids
