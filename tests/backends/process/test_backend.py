"""The process backend against real child processes: start, serve, environment, stop, limits."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from polyhost.backends.base import (
    ContainerStartError,
    ContainerStats,
    ImageNotFound,
    LaunchSpec,
    ResourceLimits,
)
from polyhost.backends.process.backend import ProcessBackend
from polyhost.backends.process.container import ProcessContainer
from polyhost.backends.registry import ImageRegistry
from polyhost.settings import Settings
from tests.support.server import CONTAINERS, free_port

T = TypeVar("T")

ENV_DUMP = """
import json, os
with open("env.json", "w") as out:
    json.dump({"env": dict(os.environ), "cwd": os.getcwd()}, out)
"""

# Ignores SIGTERM, and so does the grandchild it starts in its process group.
STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
with open("pids.json", "w") as out:
    out.write(f"[{os.getpid()}, {child.pid}]")
time.sleep(600)
"""

BUSY = "while True: pass"

# The main process dies at once; the worker it started lives on in the container's group.
# worker.pid appears whole (renamed into place), so a test that sees it can read it.
ORPHANER = """
import os, subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open("worker.pid.tmp", "w") as out:
    out.write(str(worker.pid))
os.replace("worker.pid.tmp", "worker.pid")
sys.exit(1)
"""

# Allocates (and touches) memory in 16 MiB steps up to 1 GiB.
HOG = """
import sys
blocks = []
for step in range(64):
    block = bytearray(16 * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    blocks.append(block)
print("survived", flush=True)
"""


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.fixture
def backend(tmp_path: Path) -> ProcessBackend:
    config = tmp_path / "images.toml"
    python = json.dumps(sys.executable)
    images = {
        "test/echo": [sys.executable, str(CONTAINERS / "echo_server.py")],
        "test/env": [sys.executable, "-c", ENV_DUMP],
        "test/stubborn": [sys.executable, "-c", STUBBORN],
        "test/busy": [sys.executable, "-c", BUSY],
        "test/orphaner": [sys.executable, "-c", ORPHANER],
        "test/hog": [sys.executable, "-c", HOG],
        "test/missing": [str(tmp_path / "no-such-program")],
    }
    config.write_text(
        "".join(f'[images."{name}"]\ncommand = {json.dumps(cmd)}\n' for name, cmd in images.items())
        + f'[images."polyhost/sklearn"]\npython = {python}\n',
        encoding="utf-8",
    )
    return ProcessBackend(Settings(state_dir=tmp_path / "state"), ImageRegistry.load(config))


def spec_for(
    tmp_path: Path,
    image: str,
    environment: dict[str, str] | None = None,
    model_dir: Path | None = None,
    limits: ResourceLimits | None = None,
    name: str = "c1",
) -> LaunchSpec:
    port = free_port()
    folder = tmp_path / "containers" / name
    return LaunchSpec(
        container_id=f"test-{os.getpid()}-{name}",
        image=image,
        environment=environment or {},
        model_dir=model_dir,
        host="127.0.0.1",
        port=port,
        safe_port_range=(port + 1, port + 3),
        log_path=folder / "logs" / "container.log",
        limits=limits or ResourceLimits(),
        work_dir=folder / "work",
    )


async def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(interval)


def ping(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def invoke(port: int, body: bytes) -> bytes:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body)
    with urllib.request.urlopen(request, timeout=5) as answer:
        return bytes(answer.read())


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_serves_the_contract_and_stops_on_sigterm(backend: ProcessBackend, tmp_path: Path) -> None:
    async def scenario() -> None:
        spec = spec_for(tmp_path, "test/echo", {"ECHO_NAME": "alpha"})
        handle = await backend.start(spec)
        assert (handle.host, handle.port, handle.container_id) == (
            "127.0.0.1",
            spec.port,
            spec.container_id,
        )
        await wait_for(lambda: ping(spec.port))
        assert await asyncio.to_thread(invoke, spec.port, b"hello") == b"alpha:hello"
        assert handle.exit_code() is None
        assert handle.limits_applied == "no limits requested"
        await handle.stop(30.0)
        assert handle.exit_code() == -15  # it obeyed SIGTERM: no SIGKILL after the grace
        assert not ping(spec.port)
        assert spec.log_path.is_file()
        await handle.stop(5.0)  # idempotent

    run(scenario())


def test_output_goes_to_the_log_file_and_exit_code_is_kept(
    backend: ProcessBackend, tmp_path: Path
) -> None:
    async def scenario() -> None:
        spec = spec_for(tmp_path, "test/echo", {"ECHO_NAME": "beta", "ECHO_EXIT_AT_START": "1"})
        spec.log_path.parent.mkdir(parents=True)
        spec.log_path.write_text("earlier run\n")
        handle = await backend.start(spec)
        await wait_for(lambda: handle.exit_code() is not None)
        assert handle.exit_code() == 3
        text = spec.log_path.read_text()
        assert text.startswith("earlier run\n")  # appended, not truncated
        assert "beta: configured to fail at start" in text
        assert handle.stats() is None
        await handle.stop(1.0)

    run(scenario())


def test_environment_is_an_allow_list_plus_the_model_and_the_contract(
    backend: ProcessBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POLYHOST_TEST_SECRET", "do-not-leak")
    monkeypatch.setenv("LC_TIME", "C")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    model_dir = tmp_path / "model"
    model_dir.mkdir()

    async def scenario(spec: LaunchSpec) -> dict[str, Any]:
        handle = await backend.start(spec)
        await wait_for(lambda: handle.exit_code() is not None)
        assert handle.exit_code() == 0, spec.log_path.read_text()
        assert spec.work_dir is not None
        result: dict[str, Any] = json.loads((spec.work_dir / "env.json").read_text())
        await handle.stop(1.0)
        return result

    spec = spec_for(
        tmp_path,
        "test/env",
        {"MY_SETTING": "42", "SAGEMAKER_BIND_TO_PORT": "1", "SM_MODEL_DIR": "/elsewhere"},
        model_dir=model_dir,
    )
    seen = run(scenario(spec))
    env = seen["env"]
    assert seen["cwd"] == str(spec.work_dir)
    assert env["MY_SETTING"] == "42"
    assert env["SAGEMAKER_BIND_TO_PORT"] == str(spec.port)  # the contract wins
    low, high = spec.safe_port_range
    assert env["SAGEMAKER_SAFE_PORT_RANGE"] == f"{low}-{high}"
    assert env["SM_MODEL_DIR"] == str(model_dir)
    assert env["POLYHOST_BIND_HOST"] == "127.0.0.1"
    assert env["PATH"] == os.environ["PATH"]
    assert env["LC_TIME"] == "C"
    assert env["AWS_REGION"] == backend._settings.region != "eu-west-1"  # not inherited
    assert "POLYHOST_TEST_SECRET" not in env
    assert "PYTEST_CURRENT_TEST" not in env

    without_model = run(scenario(spec_for(tmp_path, "test/env", name="c2")))
    assert "SM_MODEL_DIR" not in without_model["env"]


def test_sigkill_after_grace_reaches_the_whole_process_group(
    backend: ProcessBackend, tmp_path: Path
) -> None:
    async def scenario() -> None:
        spec = spec_for(tmp_path, "test/stubborn")
        handle = await backend.start(spec)
        assert spec.work_dir is not None
        pids_file = spec.work_dir / "pids.json"
        await wait_for(lambda: pids_file.exists() and pids_file.read_text().endswith("]"))
        leader, grandchild = json.loads(pids_file.read_text())
        assert os.getpgid(grandchild) == leader
        started = time.monotonic()
        await asyncio.gather(handle.stop(0.5), handle.stop(0.5))  # concurrent stops are fine
        # The grace was given before the SIGKILL (a lower bound: a slow machine only adds).
        assert time.monotonic() - started >= 0.5
        assert handle.exit_code() == -9
        # stop() returned, so nothing of the group runs any more (an unreaped zombie may linger
        # until init collects it; it holds no resources).
        assert gone(leader) and gone(grandchild)

    run(scenario())


def test_stats_cover_cpu_and_memory(backend: ProcessBackend, tmp_path: Path) -> None:
    async def scenario() -> None:
        handle = await backend.start(spec_for(tmp_path, "test/busy"))
        try:
            # CPU is counted since the previous call: sample until a window shows the busy loop
            # running (on a loaded machine some windows give it little of a core).
            samples: list[ContainerStats] = []

            def busy_window() -> bool:
                stats = handle.stats()
                assert stats is not None, "the busy container stopped"
                samples.append(stats)
                return stats.cpu_percent > 20.0

            await wait_for(busy_window, timeout=60, interval=0.25)
            stats = samples[-1]
            assert stats.rss_bytes > 1_000_000
            assert 0.0 < stats.memory_percent < 100.0
        finally:
            await handle.stop(1.0)
        assert handle.stats() is None

    run(scenario())


def test_unknown_image_names_the_known_ones(backend: ProcessBackend, tmp_path: Path) -> None:
    assert backend.knows_image("test/echo")
    assert backend.knows_image("polyhost/sklearn:1.2")
    assert not backend.knows_image("nope/nothing")
    assert "test/echo" in backend.known_images()
    with pytest.raises(ImageNotFound, match=r"nope/nothing.*test/echo"):
        run(backend.start(spec_for(tmp_path, "nope/nothing")))


def test_a_missing_program_is_a_clear_start_error(backend: ProcessBackend, tmp_path: Path) -> None:
    with pytest.raises(ContainerStartError, match=r"no-such-program.*test/missing.*No such file"):
        run(backend.start(spec_for(tmp_path, "test/missing", limits=ResourceLimits(1 << 30))))


def _memory_limit_applies(handle: ProcessContainer) -> bool:
    return "memory: not enforced" not in handle.limits_applied


def test_memory_limit_is_enforced(backend: ProcessBackend, tmp_path: Path) -> None:
    async def scenario() -> None:
        limits = ResourceLimits(memory_bytes=128 << 20)
        spec = spec_for(tmp_path, "test/hog", limits=limits)
        handle = await backend.start(spec)
        assert isinstance(handle, ProcessContainer)
        if not _memory_limit_applies(handle):
            await handle.stop(1.0)
            pytest.skip(f"this machine cannot limit memory: {handle.limits_applied}")
        assert "128MiB" in handle.limits_applied
        await wait_for(lambda: handle.exit_code() is not None, timeout=60)
        log = spec.log_path.read_text()
        assert "survived" not in log
        # The OOM killer (cgroups) sends SIGKILL; RLIMIT_AS makes the allocation fail instead.
        assert handle.exit_code() == -9 or "MemoryError" in log, (handle.exit_code(), log)
        await handle.stop(1.0)

    run(scenario())


def test_cpu_limit_is_enforced(backend: ProcessBackend, tmp_path: Path) -> None:
    async def scenario() -> None:
        handle = await backend.start(
            spec_for(tmp_path, "test/busy", limits=ResourceLimits(cpus=0.25))
        )
        try:
            if "cpu: not enforced" in handle.limits_applied:
                pytest.skip(f"this machine cannot limit CPU: {handle.limits_applied}")
            assert "0.25 CPU" in handle.limits_applied
            await asyncio.sleep(0.3)
            handle.stats()  # baseline
            await asyncio.sleep(1.0)
            stats = handle.stats()
            assert stats is not None
            assert stats.cpu_percent < 40.0
        finally:
            await handle.stop(1.0)

    run(scenario())


def test_cgroups_are_removed_on_stop(backend: ProcessBackend, tmp_path: Path) -> None:
    async def scenario() -> None:
        limits = ResourceLimits(memory_bytes=256 << 20, cpus=0.5)
        handle = await backend.start(spec_for(tmp_path, "test/busy", limits=limits))
        assert isinstance(handle, ProcessContainer)
        folders = handle.cgroups
        try:
            if not folders:
                pytest.skip(f"no cgroups here: {handle.limits_applied}")
            assert "via cgroup" in handle.limits_applied
            membership = Path(f"/proc/{handle.pid}/cgroup").read_text()
            for folder in folders:
                assert folder.name.startswith(f"{handle.container_id}@")
                assert folder.parent.name == "polyhost"
                assert str(handle.pid) in (folder / "cgroup.procs").read_text().split()
                assert f"/polyhost/{handle.container_id}" in membership
        finally:
            await handle.stop(1.0)
        assert not any(folder.exists() for folder in folders)

    run(scenario())


def test_orphans_of_a_killed_server_are_reaped(backend: ProcessBackend, tmp_path: Path) -> None:
    async def scenario() -> None:
        spec = spec_for(tmp_path, "test/stubborn")
        handle = await backend.start(spec)
        assert isinstance(handle, ProcessContainer)
        assert spec.work_dir is not None
        pids_file = spec.work_dir / "pids.json"
        await wait_for(lambda: pids_file.exists() and pids_file.read_text().endswith("]"))
        leader, grandchild = json.loads(pids_file.read_text())
        # A new server (new backend object, same state folder) finds what the old one left.
        again = ProcessBackend(backend._settings, ImageRegistry.load(None))
        assert await again.reap_orphans(0.2) == [spec.container_id]
        await wait_for(lambda: handle.exit_code() is not None and gone(grandchild))
        assert gone(leader)
        assert await again.reap_orphans(0.2) == []  # the record is gone too

    run(scenario())


def test_without_cgroups_memory_falls_back_to_rlimit_and_cpu_is_reported_unenforced(
    tmp_path: Path, backend: ProcessBackend, caplog: pytest.LogCaptureFixture
) -> None:
    plain = ProcessBackend(backend._settings, backend._images, cgroups=False)

    async def scenario() -> None:
        limits = ResourceLimits(memory_bytes=256 << 20, cpus=0.5)
        spec = spec_for(tmp_path, "test/hog", limits=limits)
        handle = await plain.start(spec)
        assert isinstance(handle, ProcessContainer)
        assert handle.cgroups == []
        assert "RLIMIT_AS=256MiB" in handle.limits_applied
        assert "cpu: not enforced (cgroups are turned off)" in handle.limits_applied
        await wait_for(lambda: handle.exit_code() is not None, timeout=60)
        log = spec.log_path.read_text()
        assert "MemoryError" in log and "survived" not in log
        await handle.stop(1.0)

    with caplog.at_level("WARNING", logger="polyhost.backends.process"):
        run(scenario())
    warnings = " ".join(record.getMessage() for record in caplog.records)
    assert "cpu limit NOT enforced" in warnings
    assert "memory limit 256MiB only as RLIMIT_AS" in warnings


def test_a_restart_ends_what_the_previous_run_left(backend: ProcessBackend, tmp_path: Path) -> None:
    async def scenario() -> None:
        limits = ResourceLimits(memory_bytes=256 << 20)
        spec = spec_for(tmp_path, "test/orphaner", limits=limits)
        assert spec.work_dir is not None
        worker_file = spec.work_dir / "worker.pid"
        first = await backend.start(spec)
        await wait_for(lambda: first.exit_code() == 1 and worker_file.exists())
        worker = int(worker_file.read_text())
        assert not gone(worker)
        worker_file.unlink()
        second = await backend.start(spec)  # as the deployer's supervisor does
        assert gone(worker)
        await wait_for(lambda: worker_file.exists())
        await second.stop(1.0)
        assert gone(int(worker_file.read_text()))

    run(scenario())
