"""kill -9 of the server at random points of CreateEndpoint, UpdateEndpoint and DeleteEndpoint.

Each test issues one control-plane call, SIGKILLs the server after a seeded random delay (the
call may or may not have been answered; a delay drawn from the same seed is the same on every
run, where in the operation it lands depends on the machine), restarts a server on the same
state folder and checks what "committed before answered" and "a restart reconciles" promise:

- every write that was answered survived: the model and config created before, and the call
  itself when its answer came back (an endpoint created, an update's config, a delete);
- the endpoint converges to one consistent state: gone, or InService with its containers
  answering as the config DescribeEndpoint names (each container's answer names its config).
  Failed would be consistent too, but every container here is healthy, so Failed is a defect;
- no process of the killed run is left: every container process carries the test's marker in
  its environment, and none may live outside the new server's process tree (then, once the
  server stopped, none at all);
- nothing temporary is left in the state folder: the killed server's artifact session, `*.tmp`
  files, half-removed (dot-prefixed) container folders.

One leak is a known defect, and only it turns a test into an expected failure rather than a
failure: the process backend writes a container's pid file (what the next start reaps by) only
after spawning it, so a kill in that window leaves a running container that no pid file names.
A stray whose run id is in a pid file still fails the test.

Every test names its endpoint uniquely, so that this file run twice at once on one machine
cannot mix up the two runs' containers (cgroups were once named after endpoint and revision
alone, and two servers stopped each other's containers through them).

Two tests kill at a chosen point instead: while an endpoint's containers are starting, and
while an update's new group is starting (their /ping is held back by a file the test creates
before restarting). Bounds: convergence within DEADLINE_S of the restart (a deadline against
hanging, not a measurement), processes of the killed run left = 0.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from botocore.exceptions import BotoCoreError, ClientError

from tests.support.endpoints import create_config, create_model, invoke, wait_status
from tests.support.errors import client_error
from tests.support.server import ECHO_IMAGE, PolyhostProcess, write_image_config
from tests.support.waiting import eventually

DEADLINE_S = 60.0  # generous on purpose: a loaded machine makes a test slower, never red
MARK = "KILL9_MARK"  # in every container's environment: which test's containers these are
HOSTNAMES = ("a", "b")  # two containers per endpoint (Direct): a kill can fall between them
SEEDS = (1, 2, 3, 4)
# The delays span MIN_DELAY_S to the operation's maximum on a log scale, cut in one band per
# seed, and each seed draws within its band: every operation is killed before its answer is
# likely out (~1-6 ms), around it, while containers start or stop, and after it completed (an
# echo container starts in a few hundred ms).
MIN_DELAY_S = 0.001
MAX_DELAY_S = {"create": 1.2, "update": 1.2, "delete": 0.6}
# A known defect (see the module docstring): the process backend records a container in its pid
# file only after spawning it, so a kill in between leaves a process no restart knows of.


# -- the server and its containers ---------------------------------------------------------------
@dataclass
class Run:
    """One test's server, state folder and marker, and what it knows was answered."""

    base: Path
    server: PolyhostProcess
    mark: str = field(default_factory=lambda: uuid.uuid4().hex)
    answered_models: list[str] = field(default_factory=list)
    answered_configs: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        """Unique per test (see the module docstring)."""
        return f"k9-{self.mark[:12]}"

    @property
    def state_dir(self) -> Path:
        return self.server.state_dir

    @property
    def ready_file(self) -> Path:
        return self.base / "ready"

    def sagemaker(self) -> Any:
        return self.server.sagemaker()

    def define(self, version: str, gated: bool = False) -> str:
        """Model and config `<endpoint>-<version>` of two echo containers that answer
        "<config>-<hostname>:<body>"; `gated` holds their /ping until the ready file exists."""
        name = f"{self.endpoint}-{version}"
        containers = []
        for hostname in HOSTNAMES:
            environment = {"ECHO_NAME": f"{name}-{hostname}", MARK: self.mark}
            if gated:
                environment["ECHO_READY_FILE"] = str(self.ready_file)
            containers.append(
                {"Image": ECHO_IMAGE, "ContainerHostname": hostname, "Environment": environment}
            )
        sagemaker = self.sagemaker()
        create_model(sagemaker, name, containers, mode="Direct")
        self.answered_models.append(name)
        create_config(sagemaker, name, [("AllTraffic", name, 1, 1.0)])
        self.answered_configs.append(name)
        return name


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    server = PolyhostProcess(
        state_dir=tmp_path / "state",
        image_config=write_image_config(tmp_path / "images.toml"),
        extra_args=["--health-check-interval", "0.5"],
    ).start()
    this = Run(tmp_path, server)
    try:
        yield this
    finally:
        assert server.process is not None
        if server.process.poll() is None:
            server.stop()
        # Bound: once the server stopped, no process of the test's containers is left at all.
        # What a failing build leaves is killed here, so it does not outlive the test run.
        deadline = time.monotonic() + DEADLINE_S
        while marked(this.mark) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [describe(process) for process in kill_all(marked(this.mark))]
        assert not left, f"container processes left after the server stopped: {left}"


# -- processes -----------------------------------------------------------------------------------
def marked(mark: str) -> list[psutil.Process]:
    """Live (not zombie) processes whose environment carries this test's marker."""
    found = []
    for process in psutil.process_iter():
        with suppress(psutil.Error):
            if process.environ().get(MARK) == mark and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


def strays(mark: str, server: PolyhostProcess) -> list[psutil.Process]:
    """Marked processes that are not the live server's descendants: the killed run's."""
    assert server.process is not None
    found = []
    for process in marked(mark):
        with suppress(psutil.Error):
            if server.process.pid not in {parent.pid for parent in process.parents()}:
                found.append(process)
    return found


def run_id(process: psutil.Process) -> str | None:
    with suppress(psutil.Error):
        return process.environ().get("POLYHOST_RUN_ID")
    return None


def recorded_run_ids(state_dir: Path) -> set[str]:
    """Run ids of the containers the server recorded (its pid files) for the next start."""
    found = set()
    for path in (state_dir / "run").glob("*.json"):
        with suppress(OSError, ValueError, KeyError, TypeError):
            found.add(str(json.loads(path.read_text(encoding="utf-8"))["run_id"]))
    return found


def kill_all(processes: list[psutil.Process]) -> list[psutil.Process]:
    for process in processes:
        with suppress(psutil.Error):
            process.kill()
    return processes


def describe(process: psutil.Process) -> str:
    with suppress(psutil.Error):
        return f"pid {process.pid} {process.cmdline()} in {process.cwd()}"
    return f"pid {process.pid} (gone)"


# -- temporary files -----------------------------------------------------------------------------
def sessions(state_dir: Path) -> set[str]:
    """Artifact-store sessions with a folder or a lock in the state folder."""
    artifacts = state_dir / "artifacts"
    found = {path.name for path in (artifacts / "tmp").glob("*")}
    found |= {
        path.name[len("session-") : -len(".lock")]
        for path in (artifacts / "locks").glob("session-*.lock")
    }
    return found


def temporaries(state_dir: Path) -> list[Path]:
    """`*.tmp` files and half-removed (dot-prefixed) folders anywhere in the state folder."""
    found = [p for p in state_dir.rglob("*.tmp")]
    containers = state_dir / "containers"
    if containers.is_dir():
        found += [p for p in containers.rglob(".*")]
    return found


# -- the kill ------------------------------------------------------------------------------------
def kill_during(server: PolyhostProcess, call: Callable[[], Any], delay_s: float) -> bool:
    """Issue `call` in a thread, SIGKILL the server `delay_s` after issuing it; whether the
    call was answered. An error answer fails the test: every call made here is valid."""
    outcome: dict[str, Any] = {}

    def issue() -> None:
        try:
            call()
            outcome["answered"] = True
        except ClientError as error:
            outcome["refused"] = client_error(error)
        except BotoCoreError as error:  # the connection died with the server
            outcome["cut"] = error

    thread = threading.Thread(target=issue, daemon=True)
    issued = time.monotonic()
    thread.start()
    time.sleep(max(0.0, issued + delay_s - time.monotonic()))
    server.kill9()
    thread.join(DEADLINE_S)
    assert not thread.is_alive(), "the call outlived the server by the whole deadline"
    assert "refused" not in outcome, outcome["refused"]
    return bool(outcome.get("answered"))


@dataclass
class Left:
    """What the killed server left: its processes and its artifact sessions."""

    processes: list[psutil.Process]
    sessions: set[str]
    recorded: set[str]  # run ids of the containers it recorded in its pid files


def kill_and_restart(run: Run, call: Callable[[], Any], delay_s: float) -> tuple[bool, Left]:
    """Issue `call`, SIGKILL the server `delay_s` later, note what it left, start a new one."""
    answered = kill_during(run.server, call, delay_s)
    return answered, restart(run)


def kill_now_and_restart(run: Run) -> Left:
    run.server.kill9()
    return restart(run)


def restart(run: Run) -> Left:
    left = Left(marked(run.mark), sessions(run.state_dir), recorded_run_ids(run.state_dir))
    run.server.restart()
    return left


# -- after the restart ---------------------------------------------------------------------------
def converge(run: Run) -> str | None:
    """Wait until the endpoint is gone (None) or InService; returns the config it serves,
    having checked that each container answers as that config's. Fails on Failed."""
    sagemaker, runtime = run.sagemaker(), run.server.runtime()
    deadline = time.monotonic() + DEADLINE_S
    while True:
        assert time.monotonic() < deadline, f"no consistent state within {DEADLINE_S:g} s"
        try:
            description = wait_status(sagemaker, run.endpoint, timeout=DEADLINE_S)
        except ClientError as error:
            code, _, message = client_error(error)
            assert code == "ValidationException" and "Could not find" in message, message
            return None
        status, config = description["EndpointStatus"], description["EndpointConfigName"]
        assert status == "InService", (status, description.get("FailureReason"))
        if serves(runtime, run.endpoint, config):
            again = sagemaker.describe_endpoint(EndpointName=run.endpoint)
            assert (again["EndpointStatus"], again["EndpointConfigName"]) == (status, config)
            return str(config)
        time.sleep(0.05)


def serves(runtime: Any, endpoint: str, config: str) -> bool:
    """Whether both containers answer as `config`'s; False while the server still says its
    containers are starting again (a retryable 503); any other answer fails the test."""
    for hostname in HOSTNAMES:
        try:
            body, _ = invoke(runtime, endpoint, b"x", TargetContainerHostname=hostname)
        except ClientError as error:
            code, status, message = client_error(error)
            assert status == 503, (code, status, message)
            return False
        assert body == f"{config}-{hostname}:x".encode(), (body, config)
    return True


def check_answered_writes(run: Run) -> None:
    """The models and configs created (and answered) before the kill are all still there."""
    sagemaker = run.sagemaker()
    for model in run.answered_models:
        assert sagemaker.describe_model(ModelName=model)["ModelName"] == model
    for config in run.answered_configs:
        described = sagemaker.describe_endpoint_config(EndpointConfigName=config)
        assert described["EndpointConfigName"] == config


def check_nothing_left(run: Run, left: Left) -> None:
    """Bound: processes of the killed run left = 0; its artifact session, `*.tmp` files and
    half-removed folders gone."""
    eventually(
        lambda: not [p for p in strays(run.mark, run.server) if run_id(p) in left.recorded],
        "no recorded process of the killed run",
        DEADLINE_S,
    )
    unrecorded = strays(run.mark, run.server)
    described = [describe(process) for process in unrecorded]
    kill_all(unrecorded)
    # A container spawned just before the kill was recorded before its spawn: none outlives it.
    assert not unrecorded, described
    for process in left.processes:  # the killed run's, as seen right after the kill
        with suppress(psutil.NoSuchProcess):
            assert process.status() == psutil.STATUS_ZOMBIE, describe(process)
    live = sessions(run.state_dir)
    assert len(live) <= 1, live  # at most the new server's own
    assert not (left.sessions & live), left.sessions & live
    assert not temporaries(run.state_dir), temporaries(run.state_dir)


def delay(operation: str, seed: int) -> float:
    """Seconds from issuing the call to SIGKILL: seeded, within the seed's band (log scale)."""
    low, high = math.log(MIN_DELAY_S), math.log(MAX_DELAY_S[operation])
    band = (high - low) / len(SEEDS)
    start = low + band * SEEDS.index(seed)
    return math.exp(random.Random(f"{operation}-{seed}").uniform(start, start + band))


# -- random points -------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
def test_kill_during_create_endpoint(run: Run, seed: int) -> None:
    """Bound: within DEADLINE_S of the restart an answered CreateEndpoint is InService serving
    its config; an unanswered one is that or gone; processes of the killed run left = 0."""
    config = run.define("v1")
    sagemaker = run.sagemaker()
    answered, left = kill_and_restart(
        run,
        lambda: sagemaker.create_endpoint(EndpointName=run.endpoint, EndpointConfigName=config),
        delay("create", seed),
    )
    serving = converge(run)
    check_answered_writes(run)
    assert serving == config or (serving is None and not answered), (answered, serving)
    check_nothing_left(run, left)


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_during_update_endpoint(run: Run, seed: int) -> None:
    """Bound: within DEADLINE_S of the restart an answered UpdateEndpoint serves the new
    config, InService; an unanswered one serves either config, as DescribeEndpoint says;
    processes of the killed run left = 0."""
    old, new = run.define("v1"), run.define("v2")
    sagemaker = run.sagemaker()
    sagemaker.create_endpoint(EndpointName=run.endpoint, EndpointConfigName=old)
    assert wait_status(sagemaker, run.endpoint, DEADLINE_S)["EndpointStatus"] == "InService"
    answered, left = kill_and_restart(
        run,
        lambda: sagemaker.update_endpoint(EndpointName=run.endpoint, EndpointConfigName=new),
        delay("update", seed),
    )
    serving = converge(run)
    check_answered_writes(run)
    assert serving == new or (serving == old and not answered), (answered, serving)
    check_nothing_left(run, left)


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_during_delete_endpoint(run: Run, seed: int) -> None:
    """Bound: within DEADLINE_S of the restart an answered DeleteEndpoint's endpoint is gone
    and stays gone with none of its containers running; an unanswered one is that or still
    serving; processes of the killed run left = 0."""
    config = run.define("v1")
    sagemaker = run.sagemaker()
    sagemaker.create_endpoint(EndpointName=run.endpoint, EndpointConfigName=config)
    assert wait_status(sagemaker, run.endpoint, DEADLINE_S)["EndpointStatus"] == "InService"
    answered, left = kill_and_restart(
        run,
        lambda: sagemaker.delete_endpoint(EndpointName=run.endpoint),
        delay("delete", seed),
    )
    serving = converge(run)
    check_answered_writes(run)
    assert serving is None or (serving == config and not answered), (answered, serving)
    check_nothing_left(run, left)
    if serving is None:
        eventually(lambda: not marked(run.mark), "no container of the deleted endpoint")
        assert converge(run) is None  # a restart did not bring it back


# -- chosen points -------------------------------------------------------------------------------
def wait_started(run: Run, count: int) -> None:
    """Until `count` marked container processes run (their /ping still held back)."""
    eventually(lambda: len(marked(run.mark)) >= count, f"{count} container processes")


def test_kill_while_containers_start(run: Run) -> None:
    """Killed while the endpoint's container processes run but have not passed /ping. Bound:
    within DEADLINE_S of the restart the endpoint is InService serving its config; the two
    processes of the killed run are stopped (left = 0), new ones serve."""
    config = run.define("v1", gated=True)
    sagemaker = run.sagemaker()
    sagemaker.create_endpoint(EndpointName=run.endpoint, EndpointConfigName=config)
    wait_started(run, len(HOSTNAMES))
    assert sagemaker.describe_endpoint(EndpointName=run.endpoint)["EndpointStatus"] == "Creating"
    left = kill_now_and_restart(run)
    assert len(left.processes) == len(HOSTNAMES)
    run.ready_file.touch()
    assert converge(run) == config
    check_answered_writes(run)
    check_nothing_left(run, left)


def test_kill_while_an_update_group_starts(run: Run) -> None:
    """Killed while an answered UpdateEndpoint's new group runs but has not passed /ping (the
    old group serving). Bound: within DEADLINE_S of the restart the endpoint is InService
    serving the new config; the four processes of the killed run (old and new group) are
    stopped (left = 0)."""
    old, new = run.define("v1"), run.define("v2", gated=True)
    sagemaker = run.sagemaker()
    sagemaker.create_endpoint(EndpointName=run.endpoint, EndpointConfigName=old)
    assert wait_status(sagemaker, run.endpoint, DEADLINE_S)["EndpointStatus"] == "InService"
    sagemaker.update_endpoint(EndpointName=run.endpoint, EndpointConfigName=new)
    wait_started(run, 2 * len(HOSTNAMES))
    assert sagemaker.describe_endpoint(EndpointName=run.endpoint)["EndpointStatus"] == "Updating"
    assert serves(
        run.server.runtime(), run.endpoint, old
    )  # the old group serves while the new one starts
    left = kill_now_and_restart(run)
    assert len(left.processes) == 2 * len(HOSTNAMES)
    run.ready_file.touch()
    assert converge(run) == new
    check_answered_writes(run)
    check_nothing_left(run, left)
