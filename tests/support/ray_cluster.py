"""A real multi-node Ray cluster on this machine, on loopback addresses only, for tests and benches.

`LocalRayCluster(nodes=3, tmp_path=...)` starts a head and workers as real `ray start` processes
(the `ray` next to `sys.executable`), node i on 127.0.0.(2+i), and stops them all on exit, by PID,
even when the test failed. What it takes, found with Ray 2.60 (see the fixture's own tests in
tests/backends/ray/test_cluster_fixture.py):

- **Node addresses.** Ray picks the machine's external interface when no address is given and
  replaces 127.0.0.1 by it too, so every node gets `--node-ip-address 127.0.0.N` (N >= 2). Start
  checks the GCS node table (what `ray.nodes()` reads) and fails when any node registered under
  another address.
- **Listening sockets.** `--node-ip-address` does not decide where Ray listens: its gRPC servers
  (GCS, raylet, object manager, every worker and driver) bind `::`, all interfaces, for any node
  address but 127.0.0.1. So every process of the cluster runs with `loopback_bind.c` preloaded
  (`RAY_LD_PRELOAD_ON_WORKERS=1` keeps it in the workers), which turns a wildcard bind into the
  node's own address. Start checks the listening sockets of every cluster process and fails on
  any non-loopback one. Every other port is explicit and picked free on the node's address:
  `--port` (GCS), `--node-manager-port`, `--object-manager-port`, the dashboard agent's
  `--dashboard-agent-listen-port`/`--dashboard-agent-grpc-port`, `--runtime-env-agent-port`,
  `--metrics-export-port`, on the head `--ray-client-server-port`, `--dashboard-port` (the
  dashboard is off, `--include-dashboard=false`) and `AUTOSCALER_METRIC_PORT` (the autoscaler
  monitor's fixed 44217 otherwise). Worker ports are `--min-worker-port 0 --max-worker-port 0`:
  chosen by the kernel, so clusters running at once never collide on Ray's default range.
- **Temporary folders.** One short root per cluster (`/tmp/ray-XXXXXXXX`, Ray's unix sockets
  must fit in 107 characters) with one `--temp-dir` per node under it: a node's processes are
  then the ones whose command line names its folder, plus their descendants (workers rename
  themselves `ray::IDLE`, `ray::Actor...`). The session itself is the head's: workers take its
  name from the GCS and create it under their own folder.
- **Resources.** `--num-cpus 2`, `--memory 2 GiB` (accounting only), `--object-store-memory
  128 MiB` per node by default; the log monitor only on the head (one per machine, says Ray).
  `--disable-usage-stats` and `RAY_USAGE_STATS_ENABLED=0`.
- **Failure detection.** The GCS health-checks each raylet every
  `RAY_health_check_period_ms` and declares it dead after `RAY_health_check_failure_threshold`
  misses (defaults 3000 ms and 5: ~15 s). Here: every 300 ms, 3 misses, no initial delay. A
  killed raylet refuses the check at once, so it is declared dead ~0.6-1 s after `kill_node`;
  the 2 s timeout per check keeps a merely slow raylet on a busy machine from being declared
  dead. Applies to the whole cluster (set in every `ray start` environment).
- **Drivers.** A process that calls `ray.init` attaches to a raylet on its own machine and
  listens like any worker. It must call `ray.init(address=cluster.address,
  _node_ip_address=<a node address of this machine, e.g. the head's 127.0.0.2>)` (never
  127.0.0.1, which Ray turns into the external address) and run with `cluster.driver_env()`
  (the preload again), e.g. `PolyhostProcess(env=cluster.driver_env())`. `run_driver` runs a
  snippet as such a driver; the test process itself never calls `ray.init`.

Timing on the 2-core machine: see the fixture tests' report (`start_seconds`, `stop_seconds`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.support.loopback_bind import build_library, preload_environment

RAY_EXECUTABLE = Path(sys.executable).with_name("ray")
FIRST_HOST = 2  # 127.0.0.1 is off limits: Ray replaces it by the external address
CLUSTER_MARK = "POLYHOST_TEST_RAY_CLUSTER"  # in every `ray start` environment: the cluster root
GIB = 1024**3
MIB = 1024**2
FAILURE_DETECTION = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "300",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_timeout_ms": "2000",
}
START_TIMEOUT_S = 120.0
KILL_TIMEOUT_S = 15.0
LOG_COPY_LIMIT = 256 * 1024  # bytes kept from the end of each Ray log copied into tmp_path


def ray_installed() -> bool:
    """Whether the `ray` package and its `ray` command are in this interpreter's environment."""
    return importlib.util.find_spec("ray") is not None and RAY_EXECUTABLE.exists()


class RayClusterError(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeRecord:
    """One row of the GCS node table, the same table `ray.nodes()` reads."""

    ip: str
    node_id: str
    alive: bool
    head: bool


@dataclass(frozen=True)
class KilledNode:
    ip: str
    pids: list[int]
    at: float  # time.monotonic() just before the first SIGKILL


@dataclass
class RayNode:
    ip: str
    temp_dir: Path
    head: bool
    node_id: str = ""
    raylet_pid: int = 0
    killed: bool = False

    def raylet(self) -> psutil.Process | None:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(self.raylet_pid)
            if process.name() == "raylet" and str(self.temp_dir) in " ".join(process.cmdline()):
                return process
        return None

    def worker_pids(self) -> list[int]:
        """Every live descendant of the raylet: agents, workers, actors and what they started."""
        raylet = self.raylet()
        if raylet is None:
            return []
        with contextlib.suppress(psutil.Error):
            return sorted(child.pid for child in raylet.children(recursive=True))
        return []

    def processes(self) -> list[psutil.Process]:
        """The node's processes: those naming its folder, with all their descendants."""
        return _with_descendants(_processes_naming(str(self.temp_dir)))


def _processes_naming(text: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if text in " ".join(process.info["cmdline"] or ()):
                found.append(process)
    return found


def _with_descendants(processes: list[psutil.Process]) -> list[psutil.Process]:
    everything = {process.pid: process for process in processes}
    for process in processes:
        with contextlib.suppress(psutil.Error):
            for child in process.children(recursive=True):
                everything.setdefault(child.pid, child)
    own = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
    return [process for pid, process in sorted(everything.items()) if pid not in own]


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def kill_processes(processes: list[psutil.Process], timeout: float = KILL_TIMEOUT_S) -> list[int]:
    """SIGKILL every process and wait until each is gone (a zombie counts as gone)."""
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    deadline = time.monotonic() + timeout
    while True:
        alive = [process for process in processes if not _gone(process)]
        if not alive:
            return [process.pid for process in processes]
        if time.monotonic() > deadline:
            raise RayClusterError(f"still alive {timeout:g} s after SIGKILL: {alive}")
        time.sleep(0.02)


def free_port(*addresses: str) -> int:
    """A port free on every one of `addresses` right now (bound once, then released)."""
    for _ in range(100):
        with socket.socket() as first:
            first.bind((addresses[0], 0))
            port = int(first.getsockname()[1])
            try:
                for other in addresses[1:]:
                    with socket.socket() as probe:
                        probe.bind((other, port))
            except OSError:
                continue
            return port
    raise RayClusterError(f"no port free on all of {addresses}")


def listening_addresses(processes: list[psutil.Process]) -> dict[int, list[str]]:
    """pid -> the addresses its listening TCP sockets and bound UDP sockets are on."""
    found: dict[int, list[str]] = {}
    for process in processes:
        with contextlib.suppress(psutil.Error):
            for connection in process.net_connections("inet"):
                listening = connection.status == psutil.CONN_LISTEN
                udp = connection.type == socket.SOCK_DGRAM and not connection.raddr
                if connection.laddr and (listening or udp):
                    found.setdefault(process.pid, []).append(connection.laddr.ip)
    return found


def is_loopback(address: str) -> bool:
    plain = address.removeprefix("::ffff:")
    return plain.startswith("127.") or plain == "::1"


@dataclass
class LocalRayCluster:
    """A head and `nodes - 1` workers on 127.0.0.2, 127.0.0.3, ...; a context manager."""

    nodes: int = 3
    tmp_path: Path | None = None  # `ray start` outputs and, at teardown, copies of Ray's logs
    num_cpus: int = 2
    head_num_cpus: int | None = None  # e.g. 0: nothing placed on the head, only on workers
    memory: int = 2 * GIB
    object_store_memory: int = 128 * MIB
    extra_env: dict[str, str] = field(default_factory=dict)
    root: Path = field(init=False)
    address: str = field(init=False, default="")  # the GCS, for --ray-address and ray.init
    start_seconds: float = field(init=False, default=0.0)
    stop_seconds: float = field(init=False, default=0.0)
    _nodes: list[RayNode] = field(init=False, default_factory=list)
    _library: Path | None = field(init=False, default=None)
    _gcs: Any = field(init=False, default=None)
    _killed_at: dict[str, float] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError("a cluster needs at least its head node")
        base = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
        self.root = Path(tempfile.mkdtemp(prefix="ray-", dir=base))

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self) -> LocalRayCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalRayCluster:
        if not ray_installed():
            raise RayClusterError(f"ray is not installed next to {sys.executable}")
        started = time.monotonic()
        self._library = build_library(self.root)
        head = self._new_node(head=True)
        self._run_ray_start([self._start_command(head)])
        workers = [self._new_node(head=False) for _ in range(self.nodes - 1)]
        self._run_ray_start([self._start_command(node) for node in workers])
        self.wait_nodes(alive=self.nodes, timeout=START_TIMEOUT_S)
        self._adopt_registered_nodes()
        self.assert_loopback_only()
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """Kill every process of the cluster by PID, keep its logs, remove its folder."""
        started = time.monotonic()
        self._gcs = None
        try:
            for _ in range(5):  # a raylet may start a worker between the scan and its own kill
                leftovers = self.processes()
                if not leftovers:
                    break
                kill_processes(leftovers)
            else:
                raise RayClusterError(f"processes keep coming back: {self.processes()}")
        finally:
            self._keep_logs()
            shutil.rmtree(self.root, ignore_errors=True)
            self.stop_seconds = time.monotonic() - started

    # -- nodes ------------------------------------------------------------------------------

    @property
    def head(self) -> RayNode:
        return self._nodes[0]

    @property
    def ips(self) -> list[str]:
        return [node.ip for node in self._nodes]

    def node(self, ip: str) -> RayNode:
        for node in self._nodes:
            if node.ip == ip:
                return node
        raise KeyError(f"no node {ip} in this cluster (nodes: {self.ips})")

    @property
    def live_nodes(self) -> list[RayNode]:
        return [node for node in self._nodes if not node.killed]

    def all_nodes(self) -> list[RayNode]:
        """Every node started, killed ones included (`.killed`)."""
        return list(self._nodes)

    def add_node(self, timeout: float = START_TIMEOUT_S) -> RayNode:
        """One more worker, on the next unused loopback address; returns once the GCS has it."""
        node = self._new_node(head=False)
        self._run_ray_start([self._start_command(node)])
        expected = len(self.live_nodes)
        self.wait_nodes(alive=expected, timeout=timeout)
        self._adopt_registered_nodes()
        self.assert_loopback_only()
        return node

    def kill_node(self, ip: str) -> KilledNode:
        """SIGKILL the node's raylet and every process of the node (agents, workers, actors
        and their children), all at once, by PID. The head holds the GCS: it is not killable
        here (stop the cluster instead)."""
        node = self.node(ip)
        if node.head:
            raise ValueError(f"{ip} is the head (it runs the GCS); kill a worker node")
        victims = node.processes()
        at = time.monotonic()
        pids = kill_processes(victims)
        for _ in range(3):  # anything that slipped in while the raylet was dying
            late = node.processes()
            if not late:
                break
            pids += kill_processes(late)
        node.killed = True
        self._killed_at[ip] = at
        return KilledNode(ip=ip, pids=pids, at=at)

    def wait_nodes(self, alive: int, timeout: float = 60.0) -> list[NodeRecord]:
        """Wait until exactly `alive` nodes of the GCS table are alive; the alive records."""
        deadline = time.monotonic() + timeout
        last: list[NodeRecord] = []
        while True:
            with contextlib.suppress(Exception):  # the GCS may still be coming up
                last = [record for record in self.node_table() if record.alive]
                if len(last) == alive:
                    return last
            if time.monotonic() > deadline:
                raise RayClusterError(
                    f"{len(last)} node(s) alive after {timeout:g} s, expected {alive}: {last}"
                )
            time.sleep(0.05)

    def wait_node_dead(self, ip: str, timeout: float = 30.0) -> float:
        """Wait until the GCS marks the (killed) node at `ip` dead; seconds since it was killed."""
        deadline = time.monotonic() + timeout
        while True:
            records = [record for record in self.node_table() if record.ip == ip]
            if records and not any(record.alive for record in records):
                return time.monotonic() - self._killed_at.get(ip, time.monotonic())
            if time.monotonic() > deadline:
                raise RayClusterError(f"node {ip} still alive in the GCS after {timeout:g} s")
            time.sleep(0.01)

    # -- looking at the cluster -------------------------------------------------------------

    def node_table(self) -> list[NodeRecord]:
        """The GCS node table (dead nodes included), read as a GCS client, not a driver: the
        test process never becomes part of the cluster."""
        if self._gcs is None:
            from ray._raylet import GcsClient  # type: ignore[attr-defined]

            self._gcs = GcsClient(address=self.address)
        infos = self._gcs.get_all_node_info(timeout=10)
        return [
            NodeRecord(
                ip=info.node_manager_address,
                node_id=info.node_id.hex(),
                alive=info.state == 0,  # GcsNodeInfo.ALIVE
                head=info.is_head_node,
            )
            for info in infos.values()
        ]

    def processes(self) -> list[psutil.Process]:
        """Every process of the cluster: naming its root (or GCS), marked, and descendants."""
        marked = _processes_naming(str(self.root))
        if self.address:
            marked += _processes_naming(f"--address={self.address}")
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if process.environ().get(CLUSTER_MARK) == str(self.root):
                    marked.append(process)
        return _with_descendants(marked)

    def assert_loopback_only(self) -> None:
        """Fail when any process of the cluster listens on a non-loopback address."""
        outside = {
            pid: addresses
            for pid, addresses in listening_addresses(self.processes()).items()
            if not all(is_loopback(address) for address in addresses)
        }
        if outside:
            raise RayClusterError(f"cluster processes listen beyond loopback: {outside}")

    # -- drivers ----------------------------------------------------------------------------

    def driver_env(self, ip: str | None = None) -> dict[str, str]:
        """Environment for a process that will `ray.init` into this cluster from node `ip`
        (default the head): its listeners stay on that address. Merge into os.environ."""
        assert self._library is not None, "the cluster is not started"
        return {
            **preload_environment(self._library, ip or self.head.ip),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ADDRESS": self.address,
        }

    def init_arguments(self, ip: str | None = None) -> dict[str, str]:
        """Keyword arguments of `ray.init` for a driver on this machine."""
        return {"address": self.address, "_node_ip_address": ip or self.head.ip}

    def run_driver(self, code: str, timeout: float = 120.0) -> str:
        """Run `code` in a fresh Python that is a driver of this cluster (`ray` imported and
        initialised); its stdout. Raises with its output when it fails."""
        init = ", ".join(f"{key}={value!r}" for key, value in self.init_arguments().items())
        program = (
            f"import ray\nray.init({init}, logging_level='ERROR', log_to_driver=False)\n"
            + textwrap.dedent(code)
        )
        result = subprocess.run(
            [sys.executable, "-c", program],
            env={**os.environ, **self.driver_env()},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RayClusterError(
                f"driver failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                f"{result.stderr[-3000:]}"
            )
        return result.stdout

    # -- internals --------------------------------------------------------------------------

    def _new_node(self, head: bool) -> RayNode:
        host = FIRST_HOST + len(self._nodes)
        if host > 254:
            raise RayClusterError("out of 127.0.0.x addresses")
        node = RayNode(ip=f"127.0.0.{host}", temp_dir=self.root / f"n{len(self._nodes)}", head=head)
        self._nodes.append(node)
        return node

    def _start_command(self, node: RayNode) -> tuple[RayNode, list[str], dict[str, str]]:
        ip = node.ip
        command = [
            str(RAY_EXECUTABLE), "start",
            "--node-ip-address", ip,
            "--temp-dir", str(node.temp_dir),
            "--node-manager-port", str(free_port(ip)),
            "--object-manager-port", str(free_port(ip)),
            "--min-worker-port", "0",
            "--max-worker-port", "0",
            "--dashboard-agent-listen-port", str(free_port(ip)),
            "--dashboard-agent-grpc-port", str(free_port(ip)),
            "--runtime-env-agent-port", str(free_port(ip)),
            "--metrics-export-port", str(free_port(ip)),
            "--num-cpus", str(self._cpus(node)),
            "--memory", str(self.memory),
            "--object-store-memory", str(self.object_store_memory),
            "--disable-usage-stats",
            "--include-log-monitor", "true" if node.head else "false",
        ]  # fmt: skip
        assert self._library is not None
        env = {
            **os.environ,
            **self.extra_env,
            **FAILURE_DETECTION,
            **preload_environment(self._library, ip),
            "RAY_LD_PRELOAD_ON_WORKERS": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            CLUSTER_MARK: str(self.root),
        }
        env.pop("RAY_ADDRESS", None)
        if node.head:
            port = free_port(ip)
            self.address = f"{ip}:{port}"
            command += [
                "--head",
                "--port", str(port),
                "--include-dashboard", "false",
                "--dashboard-port", str(free_port(ip)),
                "--ray-client-server-port", str(free_port(ip, "127.0.0.1")),
            ]  # fmt: skip
            env["AUTOSCALER_METRIC_PORT"] = str(free_port(ip))
        else:
            command += ["--address", self.address]
        return node, command, env

    def _cpus(self, node: RayNode) -> int:
        if node.head and self.head_num_cpus is not None:
            return self.head_num_cpus
        return self.num_cpus

    def _run_ray_start(self, starts: list[tuple[RayNode, list[str], dict[str, str]]]) -> None:
        """Run the `ray start` commands side by side; each returns once its node is up."""
        outputs = self.tmp_path or self.root
        outputs.mkdir(parents=True, exist_ok=True)
        running = []
        for node, command, env in starts:
            log_path = outputs / f"ray-start-{node.ip}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            running.append((node, process, log_path))
        deadline = time.monotonic() + START_TIMEOUT_S
        failures = []
        for node, process, log_path in running:
            try:
                code = process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
                code = -9
            if code != 0:
                output = log_path.read_text(errors="replace")[-3000:]
                failures.append(f"`ray start` of {node.ip} exited {code}:\n{output}")
        if failures:
            raise RayClusterError("\n".join(failures))

    def _adopt_registered_nodes(self) -> None:
        """Match GCS records to our nodes; fail loudly on any node under another address."""
        records = [record for record in self.node_table() if record.alive]
        ours = {node.ip: node for node in self.live_nodes}
        strangers = [record for record in records if record.ip not in ours]
        if strangers:
            raise RayClusterError(
                f"nodes registered under addresses not asked for (expected {sorted(ours)}): "
                f"{strangers}"
            )
        for record in records:
            node = ours[record.ip]
            node.node_id = record.node_id
            if record.head != node.head:
                raise RayClusterError(f"{record.ip}: head flag {record.head}, expected {node.head}")
            raylets = [p for p in _processes_naming(str(node.temp_dir)) if p.name() == "raylet"]
            if len(raylets) != 1:
                raise RayClusterError(f"{node.ip}: expected one raylet, found {raylets}")
            node.raylet_pid = raylets[0].pid

    def _keep_logs(self) -> None:
        """Copy the tail of each Ray log into tmp_path/ray-logs, for a failed test's reader."""
        if self.tmp_path is None:
            return
        with contextlib.suppress(OSError):
            for node in self._nodes:
                logs = node.temp_dir / "session_latest" / "logs"
                if not logs.is_dir():
                    continue
                target = self.tmp_path / "ray-logs" / node.ip
                target.mkdir(parents=True, exist_ok=True)
                for log in logs.iterdir():
                    if log.is_file() and log.suffix in (".out", ".err", ".log"):
                        with open(log, "rb") as source:
                            source.seek(max(0, log.stat().st_size - LOG_COPY_LIMIT))
                            (target / log.name).write_bytes(source.read())
