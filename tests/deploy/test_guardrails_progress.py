"""A traffic-shifting deployment's progress (`EndpointDeployer.deployment_progress`, what the
dashboard shows) and the rolling update of an endpoint's instances, over the fake backend.

A watcher of the deployer records every entry as it is replaced: a CANARY goes Starting, Baking
(the canary beside the whole old fleet), Terminating (all traffic on the new fleet); a rolling
update goes Starting, Baking, Terminating batch after batch; an alarm in ALARM during a rolling
update's bake rolls it back in batches of RollbackMaximumBatchSize (RollingBack). Each entry
goes once the deployment ends. Requests sent all along never fail."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from polyhost.control.seam import BlueGreenUpdate, EndpointSpec, RollingUpdate
from polyhost.deploy.progress import DeploymentProgress
from tests.support.fake_backend import (
    DeployHarness,
    Start,
    container,
    deploy_harness,
    endpoint,
    eventually,
    variant,
)

Step = tuple[str, int, int]  # (phase, new instances, old instances)


def run(tmp_path: Path, scenario: Callable[[DeployHarness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with deploy_harness(tmp_path / "state") as harness:
            await scenario(harness)

    asyncio.run(main())


def _fleets(old: int, new: int) -> tuple[EndpointSpec, EndpointSpec]:
    """Revision 1 of `old` "blue" instances, revision 2 of `new` "green" ones."""
    blue = endpoint("ep", variant(container("blue"), instance_count=old))
    green = endpoint("ep", variant(container("green"), instance_count=new), revision=2)
    return blue, green


class Sampler:
    """Every entry of endpoint "ep" as the deployer replaces it (`watch_progress`), each checked
    to be what `deployment_progress` answers at that moment, as a dashboard would read it."""

    def __init__(self, h: DeployHarness) -> None:
        self.entries: list[DeploymentProgress] = []
        self.ended = 0
        self._h = h
        h.deployer.watch_progress(self._changed)

    def _changed(self, name: str, entry: DeploymentProgress | None) -> None:
        assert self._h.deployer.deployment_progress(name) is entry
        if name != "ep":
            return
        if entry is None:
            self.ended += 1
        else:
            self.entries.append(entry)

    @property
    def steps(self) -> list[Step]:
        return [(e.phase, e.new_instances, e.old_instances) for e in self.entries]


class Load:
    """Requests one after another on the loop; every answer's fleet and every error kept."""

    def __init__(self, h: DeployHarness) -> None:
        self.fleets: list[str] = []
        self.errors: list[str] = []
        self._h = h
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                answer = (await self._h.invoke("ep")).decode()
                self.fleets.append(answer.split(":")[0].rsplit(".", 1)[-1])
            except Exception as error:  # every failure counts
                self.errors.append(repr(error))
            await asyncio.sleep(0.005)

    def stop(self) -> None:
        self._task.cancel()


def test_a_canary_goes_through_its_phases(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        blue, green = _fleets(old=2, new=2)
        h.deployer.apply(blue)
        await h.report("ep", 1)
        gate = asyncio.Event()
        h.backend.plan("green", Start(gate=gate), Start(gate=gate))
        sampler = Sampler(h)
        guard = BlueGreenUpdate(
            traffic="CANARY",
            wait_s=0.3,
            steps=((1,),),
            variants=("AllTraffic",),
            termination_wait_s=0.2,
        )
        h.deployer.apply(replace(green, guardrails=guard))
        await eventually(lambda: sampler.steps, "the deployment's first entry")
        gate.set()
        report = await h.report("ep", 2)
        assert (report.status, report.serving_config_name) == ("InService", "ep-cfg-2")
        assert h.deployer.deployment_progress("ep") is None and sampler.ended == 1
        assert sampler.steps == [("Starting", 0, 2), ("Baking", 1, 2), ("Terminating", 2, 0)]
        first, baking, terminating = sampler.entries
        assert (first.policy, first.from_config, first.to_config) == (
            "CANARY",
            "ep-cfg-1",
            "ep-cfg-2",
        )
        assert {e.wanted_instances for e in sampler.entries} == {2}
        assert {e.started_at for e in sampler.entries} == {first.started_at}
        assert first.phase_ends_at is None
        assert baking.phase_ends_at is not None and terminating.phase_ends_at is not None
        assert 0.25 < baking.phase_ends_at - first.started_at < 30
        assert all(e.reason is None for e in sampler.entries)

    run(tmp_path, scenario)


def _rolling(batch: int, wait_s: float, **more: Any) -> RollingUpdate:
    return RollingUpdate(
        batch_type="INSTANCE_COUNT",
        batch_value=batch,
        wait_s=wait_s,
        **more,  # type: ignore[arg-type]
    )


def test_a_rolling_update_replaces_instances_in_batches(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        blue, green = _fleets(old=4, new=4)
        h.deployer.apply(blue)
        await h.report("ep", 1)
        sampler, load = Sampler(h), Load(h)
        await eventually(lambda: load.fleets, "answers of the old fleet")
        h.deployer.apply(replace(green, guardrails=_rolling(batch=2, wait_s=0.3)))

        def routed() -> tuple[int, int]:
            route = h.router.route("ep")
            assert route is not None
            fleets = [r.containers[0].hostname for r in route.variants[0].replicas]
            return fleets.count("blue"), fleets.count("green")

        # While the first batch bakes: two new instances routed beside the whole old fleet.
        await eventually(lambda: sampler.steps[1:2] == [("Baking", 2, 4)], "the first bake")
        assert routed() == (4, 2)
        report = await h.report("ep", 2)
        assert report.status == "InService" and report.failure_reason is None
        await eventually(lambda: load.fleets[-3:] == ["green"] * 3, "the new fleet's answers")
        load.stop()
        assert sampler.steps == [
            ("Starting", 0, 4),
            ("Baking", 2, 4),
            ("Terminating", 2, 2),
            ("Starting", 2, 2),
            ("Baking", 4, 2),
            ("Terminating", 4, 0),
        ]
        assert {e.policy for e in sampler.entries} == {"ROLLING"}
        assert h.deployer.deployment_progress("ep") is None and sampler.ended == 1
        assert load.errors == []
        # Both fleets answered in between: batches, not one switch.
        first_green = load.fleets.index("green")
        assert "blue" in load.fleets[first_green:]
        assert routed() == (0, 4)
        assert len(h.backend.running("blue")) == 0 and len(h.backend.running("green")) == 4
        assert [v.current_instance_count for v in report.variants] == [4]

    run(tmp_path, scenario)


def test_an_alarm_rolls_a_rolling_update_back_in_batches(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        alarms = {"errors": "OK"}
        h.deployer.bind_alarms(alarms.get)
        blue, green = _fleets(old=4, new=4)
        h.deployer.apply(blue)
        await h.report("ep", 1)
        sampler, load = Sampler(h), Load(h)
        rolling = _rolling(
            batch=2,
            wait_s=1.5,
            rollback_type="INSTANCE_COUNT",
            rollback_value=1,
            alarms=("errors",),
        )
        h.deployer.apply(replace(green, guardrails=rolling))
        # The second batch bakes (four new instances beside two old): the alarm goes off.
        await eventually(lambda: ("Baking", 4, 2) in sampler.steps, "the second bake", 90)
        alarms["errors"] = "ALARM"
        reports = await eventually(
            lambda: [r for r in h.sink.of("ep", 2) if r.status == "InService"],
            "the end of the rollback",
        )
        load.stop()
        statuses = [r.status for r in h.sink.of("ep", 2)]
        assert statuses == ["RollingBack", "InService"]
        reason = reports[0].failure_reason or ""
        assert reason.startswith("Update to endpoint config ep-cfg-2 failed: rolled back: ")
        assert "the alarm errors (AutoRollbackConfiguration)" in reason
        assert reports[0].serving_config_name == "ep-cfg-1"
        back = [s for s in sampler.steps if s[0] == "RollingBack"]
        # One old instance back and one new one out at a time, until the old fleet is whole.
        assert back == [("RollingBack", 4, 2), ("RollingBack", 3, 3), ("RollingBack", 0, 4)]
        assert "the alarm errors" in (sampler.entries[-1].reason or "")
        assert h.deployer.deployment_progress("ep") is None and sampler.ended == 1
        assert load.errors == []
        assert len(h.backend.running("blue")) == 4 and len(h.backend.running("green")) == 0
        answers = {(await h.invoke("ep")).decode().split(":")[0] for _ in range(8)}
        assert all(".blue" in a for a in answers), answers

    run(tmp_path, scenario)


def test_new_instances_that_fail_roll_the_update_back(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        blue, green = _fleets(old=2, new=2)
        h.deployer.apply(blue)
        await h.report("ep", 1)
        sampler, load = Sampler(h), Load(h)
        # The first new instance starts; the second exits at once.
        h.backend.plan("green", Start(), Start(exit_code=3, log="broken"))
        h.deployer.apply(replace(green, guardrails=_rolling(batch=1, wait_s=0)))
        reports = await eventually(
            lambda: [r for r in h.sink.of("ep", 2) if r.status == "InService"],
            "the end of the rollback",
        )
        load.stop()
        assert [r.status for r in h.sink.of("ep", 2)] == ["RollingBack", "InService"]
        assert reports[0].serving_config_name == "ep-cfg-1"
        assert "rolled back" in (reports[0].failure_reason or "")
        assert load.errors == []
        assert len(h.backend.running("blue")) == 2 and len(h.backend.running("green")) == 0
        assert h.deployer.deployment_progress("ep") is None and sampler.ended == 1
        # The old instance the first batch replaced came back, the new one went, at once.
        assert sampler.steps[-2:] == [("RollingBack", 1, 1), ("RollingBack", 0, 2)]
        assert "exited with code 3" in (sampler.entries[-1].reason or "")

    run(tmp_path, scenario)


def test_a_batch_that_outlasts_the_time_bound_rolls_back(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        blue, green = _fleets(old=2, new=2)
        h.deployer.apply(blue)
        await h.report("ep", 1)
        sampler, load = Sampler(h), Load(h)
        # The second new instance never gets past its start.
        h.backend.plan("green", Start(), Start(gate=asyncio.Event()))
        h.deployer.apply(replace(green, guardrails=_rolling(batch=1, wait_s=0, timeout_s=1.0)))
        reports = await eventually(
            lambda: [r for r in h.sink.of("ep", 2) if r.status == "InService"],
            "the end of the rollback",
        )
        load.stop()
        reason = reports[0].failure_reason or ""
        assert "did not start within the deployment's MaximumExecutionTimeoutInSeconds" in reason
        assert load.errors == []
        assert len(h.backend.running("blue")) == 2 and len(h.backend.running("green")) == 0
        assert sampler.steps[-1] == ("RollingBack", 0, 2) and sampler.ended == 1

    run(tmp_path, scenario)
