"""A container's escaped grandchild (double fork + setsid) ends with its container, on both paths.

With cgroups the kernel keeps the grandchild in the container's cgroup (every container gets one
when the machine allows, limits or not); without them the server is a child subreaper, so the
orphan becomes the server's child and is found by the run id in its environment. Either way the
bound held is: no process of the container is left once its stop returns, and no zombie of it
stays with the server.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil
import pytest

from polyhost.backends import cgroups, proc
from polyhost.backends.process.backend import ProcessBackend, ProcessContainer
from polyhost.backends.registry import ImageRegistry
from tests.backends.launch import FAULTY, backend_for, gone, launch_spec, wait_for

ESCAPE = {"FAULT": "fork-and-escape"}


def machine_allows_cgroups() -> bool:
    """Some mounted hierarchy where this process may create a cgroup."""
    return any(
        os.access(folder, os.W_OK)
        for hierarchy in cgroups.discover_here()
        for folder in hierarchy.candidates()
    )


async def start_escaper(backend: ProcessBackend, tmp_path: Path) -> tuple[ProcessContainer, int]:
    """Start a container that leaves a grandchild behind; returns it and the grandchild's pid."""
    spec = launch_spec(tmp_path, "test/faulty", ESCAPE)
    handle = await backend.start(spec)
    assert isinstance(handle, ProcessContainer)
    assert spec.work_dir is not None
    pid_file = spec.work_dir / "grandchild.pid"
    try:
        await wait_for(pid_file.exists, "the grandchild to write its pid")
        grandchild = int(pid_file.read_text())
        # It left the container's session and process group: a stop of the group misses it.
        assert os.getsid(grandchild) != handle.pid
        assert os.getpgid(grandchild) != handle.pid
    except BaseException:
        await handle.stop(0.1)  # a failing test leaves nothing running either
        raise
    return handle, grandchild


@pytest.mark.parametrize("use_cgroups", [True, False], ids=["cgroups", "subreaper"])
def test_an_escaped_grandchild_is_stopped_with_its_container(
    tmp_path: Path, use_cgroups: bool
) -> None:
    backend = backend_for(tmp_path, {"test/faulty": FAULTY}, cgroups=use_cgroups)

    async def scenario() -> None:
        handle, grandchild = await start_escaper(backend, tmp_path)
        try:
            if use_cgroups:
                if not machine_allows_cgroups():
                    pytest.skip("this machine lets the server make no cgroup")
                # No limit was asked for: the cgroup is there to hold every process.
                assert handle.cgroups, "no cgroup although the machine allows one"
                assert handle.limits_applied == "no limits requested"
                members = (handle.cgroups[0] / "cgroup.procs").read_text().split()
                assert str(grandchild) in members
            else:
                assert handle.cgroups == []
                # The subreaper at work: the orphan is the server's child, not init's.
                assert psutil.Process(grandchild).ppid() == os.getpid()
            assert not gone(grandchild)
        finally:
            await handle.stop(1.0)
        assert gone(grandchild)
        # Collected too: no zombie of the container stays with the server.
        await wait_for(lambda: not psutil.pid_exists(grandchild), "the zombie to be collected")
        assert handle.log_pump.done  # its output pipe closed with the last process

    asyncio.run(scenario())


def test_a_crashed_servers_escaped_grandchild_is_reaped_at_the_next_start(
    tmp_path: Path,
) -> None:
    """No cgroups and the server was killed: the next one finds the orphan by its run id."""
    first = backend_for(tmp_path, {"test/faulty": FAULTY}, cgroups=False)

    async def scenario() -> None:
        handle, grandchild = await start_escaper(first, tmp_path)
        # A new server on the same state folder (the first one is as good as dead).
        again = ProcessBackend(first._settings, ImageRegistry.load(None), cgroups=False)
        assert await again.reap_orphans(0.5) == [handle.container_id]
        await wait_for(lambda: gone(grandchild) and gone(handle.pid), "the orphans to end")
        await handle.stop(0.1)

    asyncio.run(scenario())


def test_an_orphan_that_dies_on_its_own_is_collected(tmp_path: Path) -> None:
    """The subreaper makes the server the orphan's parent, so the server must collect it."""
    backend = backend_for(tmp_path, {"test/faulty": FAULTY}, cgroups=False)

    async def scenario() -> None:
        handle, grandchild = await start_escaper(backend, tmp_path)
        try:
            assert psutil.Process(grandchild).ppid() == os.getpid()
            os.kill(grandchild, signal.SIGKILL)  # it dies while its container serves on
            await wait_for(lambda: not psutil.pid_exists(grandchild), "the zombie's collection")
            assert handle.exit_code() is None
        finally:
            await handle.stop(1.0)

    asyncio.run(scenario())


@pytest.mark.parametrize("use_cgroups", [True, False], ids=["cgroups", "subreaper"])
def test_another_servers_container_is_never_taken_for_an_orphan(
    tmp_path: Path, use_cgroups: bool
) -> None:
    """Container ids repeat across servers on one machine (two servers, two test runs); the
    run id does not, and neither does the cgroup named after it."""
    mine = backend_for(tmp_path / "a", {"test/faulty": FAULTY}, cgroups=use_cgroups)
    theirs = backend_for(tmp_path / "b", {"test/faulty": FAULTY}, cgroups=use_cgroups)

    async def scenario() -> None:
        left, left_grandchild = await start_escaper(mine, tmp_path / "a")
        other, other_grandchild = await start_escaper(theirs, tmp_path / "b")
        try:
            assert left.container_id == other.container_id
            assert not set(left.cgroups) & set(other.cgroups)
            again = ProcessBackend(mine._settings, ImageRegistry.load(None), cgroups=use_cgroups)
            assert await again.reap_orphans(0.5) == [left.container_id]
            await wait_for(lambda: gone(left_grandchild), "the orphan of the crashed server")
            assert not gone(other_grandchild) and other.exit_code() is None
        finally:
            await other.stop(1.0)
            await left.stop(0.1)
        assert gone(other_grandchild)

    asyncio.run(scenario())


def test_descendants_are_found_from_the_tree_as_psutil_finds_them(tmp_path: Path) -> None:
    """The walk of /proc/<pid>/task/<tid>/children finds what psutil's scan of every process
    finds: children of the main thread and of another thread, and grandchildren."""
    import subprocess
    import sys
    import time

    program = (
        "import subprocess, sys, threading, time\n"
        "kids = [subprocess.Popen([sys.executable, '-c', "
        '\'import subprocess, sys, time; subprocess.Popen([sys.executable, "-c", '
        '"import time; time.sleep(60)"]); time.sleep(60)\'])]\n'
        "started = threading.Event()\n"
        "def from_a_thread():\n"  # the thread lives on: its child stays listed under it
        "    kids.append(subprocess.Popen(['sleep', '60']))\n"
        "    started.set()\n"
        "    time.sleep(60)\n"
        "threading.Thread(target=from_a_thread, daemon=True).start()\n"
        "started.wait()\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == b"ready"
        root = psutil.Process(parent.pid)
        deadline = time.monotonic() + 10
        while len(root.children(recursive=True)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        expected = {parent.pid, *(p.pid for p in root.children(recursive=True))}
        assert len(expected) == 4
        assert {p.pid for p in proc.descendants(parent.pid)} == expected
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    assert proc.descendants(parent.pid) == []
