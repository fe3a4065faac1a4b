"""The supervisor in process: a serving container that exits is restarted, with backoff.

Driven through the deployer (which starts one supervisor per serving container) over the fake
backend, so a test decides when a container dies and how its restarts go. The supervisor's
timing constants are shrunk so the tests spend little time asleep; what is asserted is events:
the route going unavailable and back, the caller's 503 meanwhile, the restarts counted, the
backoff the supervisor announces in its log, and no restart once the endpoint is gone.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from polyhost.deploy import supervisor
from polyhost.deploy.running import RunningContainer
from polyhost.errors import ServiceUnavailable
from polyhost.router.table import ContainerRoute
from tests.support.fake_backend import (
    DeployHarness,
    Start,
    container,
    deploy_harness,
    endpoint,
    eventually,
    variant,
)

BACKOFF_ANNOUNCED = re.compile(r"restarting in ([0-9.]+)s")


@pytest.fixture(autouse=True)
def quick_supervisor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Poll often and back off briefly: the rules stay the same, the waits get short."""
    monkeypatch.setattr(supervisor, "POLL_S", 0.01)
    monkeypatch.setattr(supervisor, "BACKOFF_FIRST_S", 0.1)
    monkeypatch.setattr(supervisor, "BACKOFF_MAX_S", 0.4)


@pytest.fixture
def announced(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[float]]]:
    """The restart delays the supervisor announced, in order."""
    with caplog.at_level(logging.INFO, logger="polyhost.deploy"):
        yield lambda: [
            float(match.group(1))
            for record in caplog.records
            if (match := BACKOFF_ANNOUNCED.search(record.getMessage()))
        ]


def run(tmp_path: Path, scenario: Callable[[DeployHarness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with deploy_harness(tmp_path / "state") as harness:
            await scenario(harness)

    asyncio.run(main())


async def serving(h: DeployHarness, *hostnames: str) -> None:
    """Endpoint `ep` InService: one Direct variant holding `hostnames`."""
    h.deployer.apply(endpoint("ep", variant(*map(container, hostnames), mode="Direct")))
    assert (await h.report("ep", 1)).status == "InService"


def running_container(h: DeployHarness, hostname: str) -> RunningContainer:
    (group,) = h.deployer.groups()
    (found,) = [c for c in group.containers if c.spec.hostname == hostname]
    return found


def route_of(h: DeployHarness, hostname: str) -> ContainerRoute:
    route = running_container(h, hostname).route
    assert route is not None
    return route


async def crash_and_await_restart(h: DeployHarness, hostname: str) -> None:
    """Crash the running `hostname` and wait until its restarted self serves."""
    route = route_of(h, hostname)
    starts = len(h.backend.containers(hostname))
    await h.backend.running(hostname)[0].crash(1)
    await eventually(
        lambda: len(h.backend.containers(hostname)) > starts and route.available, "a restart"
    )


def test_an_exited_container_is_unavailable_then_restarted(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def scenario(h: DeployHarness) -> None:
        await serving(h, "model", "other")
        (first,) = h.backend.containers("model")
        route = route_of(h, "model")
        h.backend.plan("model", Start(gate=gate))  # the restart waits until the test says

        await first.crash(137)
        await eventually(lambda: h.backend.starting == 1, "the restart to begin")
        # Meanwhile: a clear, retryable 503 naming the container and why it is down ...
        assert route.available is False
        assert route.unavailable_reason == (
            "it exited with code 137 and is being restarted (restart 1)"
        )
        with pytest.raises(ServiceUnavailable) as excinfo:
            await h.invoke("ep", target_container="model")
        assert excinfo.value.message == (
            "Container model of endpoint ep is unavailable: it exited with code 137 and is "
            "being restarted (restart 1). Retry shortly."
        )
        # ... the metrics say it is down and was restarted once ...
        samples = {s.container_name: s for s in h.deployer.container_samples()}
        assert (samples["model"].up, samples["model"].restarts) == (False, 1)
        # ... and its neighbour serves on undisturbed.
        assert await h.invoke("ep", b"n", target_container="other") == (
            b"ep.r1.AllTraffic.i-0.other:n"
        )

        gate.set()
        await eventually(lambda: route.available, "the container to be back")
        assert route.unavailable_reason == ""
        second = h.backend.containers("model")[-1]
        assert second is not first and second.running and second.pings >= 1
        assert running_container(h, "model").handle is second
        assert await h.invoke("ep", b"y", target_container="model") == (
            b"ep.r1.AllTraffic.i-0.model:y"
        )
        assert second.bodies == [b"y"]
        assert route_of(h, "model") is route  # the same route: no new publish was needed
        samples = {s.container_name: s for s in h.deployer.container_samples()}
        assert (samples["model"].up, samples["model"].restarts) == (True, 1)
        # The control plane hears nothing of it: the endpoint stayed InService throughout.
        assert [r.status for r in h.sink.of("ep")] == ["InService"]

    run(tmp_path, scenario)


def test_failed_restarts_back_off_doubling_up_to_the_cap(
    tmp_path: Path, announced: Callable[[], list[float]]
) -> None:
    async def scenario(h: DeployHarness) -> None:
        await serving(h, "model")
        route = route_of(h, "model")
        # Three restarts die at once; the fourth comes up.
        h.backend.plan("model", *(Start(exit_code=1, log="model: out of memory"),) * 3)
        await h.backend.containers("model")[0].crash(1)
        await eventually(lambda: len(h.backend.containers("model")) == 5, "the fourth restart")
        await eventually(lambda: route.available, "the container to be back")
        assert announced() == [0.1, 0.2, 0.4, 0.4]
        assert running_container(h, "model").restarts == 4
        assert [c.running for c in h.backend.containers("model")] == [False] * 4 + [True]

    run(tmp_path, scenario)


def test_backoff_grows_while_a_container_keeps_dying_soon_after_restarting(
    tmp_path: Path, announced: Callable[[], list[float]]
) -> None:
    """A restart that succeeds does not reset the backoff until the container has stayed up."""

    async def scenario(h: DeployHarness) -> None:
        await serving(h, "model")
        await crash_and_await_restart(h, "model")
        await crash_and_await_restart(h, "model")
        assert announced() == [0.1, 0.2]

    run(tmp_path, scenario)


def test_backoff_starts_over_once_a_container_stayed_up(
    tmp_path: Path, announced: Callable[[], list[float]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "STABLE_AFTER_S", 0.0)  # any time up counts as stable

    async def scenario(h: DeployHarness) -> None:
        await serving(h, "model")
        await crash_and_await_restart(h, "model")
        await crash_and_await_restart(h, "model")
        assert announced() == [0.1, 0.1]

    run(tmp_path, scenario)


def test_a_restart_that_never_passes_ping_is_stopped_and_tried_again(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        await serving(h, "model")
        route = route_of(h, "model")
        running_container(h, "model").startup_timeout_s = 0.3
        h.backend.plan("model", Start(listen=False))  # the first restart hangs in its start
        await h.backend.containers("model")[0].crash(1)
        await eventually(lambda: len(h.backend.containers("model")) == 3, "a second restart")
        await eventually(lambda: route.available, "the container to be back")
        _, hung, good = h.backend.containers("model")
        assert not hung.running and hung.stop_calls  # stopped, not left behind
        assert good.running
        assert running_container(h, "model").restarts == 2

    run(tmp_path, scenario)


def test_no_restart_once_the_endpoint_is_removed(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        await serving(h, "model")
        (group,) = h.deployer.groups()
        h.deployer.remove("ep")
        await eventually(lambda: all(t.done() for t in group.supervisors), "supervisors to end")
        (only,) = h.backend.containers("model")
        assert not only.running
        # Stopped by the deployer, not crashed: and nothing brings it back.
        await h.deployer.shutdown()
        assert len(h.backend.containers("model")) == 1
        assert [c.restarts for c in group.containers] == [0]

    run(tmp_path, scenario)


def test_a_crash_during_the_backoff_of_a_stopping_group_is_not_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint is deleted while its crashed container waits to be restarted."""
    monkeypatch.setattr(supervisor, "BACKOFF_FIRST_S", 0.3)

    async def scenario(h: DeployHarness) -> None:
        await serving(h, "model")
        (group,) = h.deployer.groups()
        route = route_of(h, "model")
        await h.backend.containers("model")[0].crash(1)
        await eventually(lambda: not route.available, "the crash to be noticed")
        h.deployer.remove("ep")
        await eventually(lambda: all(t.done() for t in group.supervisors), "supervisors to end")
        assert len(h.backend.containers("model")) == 1
        assert h.backend.running() == []

    run(tmp_path, scenario)
