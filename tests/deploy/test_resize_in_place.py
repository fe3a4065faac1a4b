"""An endpoint revision that changes only instance counts and weights (`EndpointSpec.in_place`,
UpdateEndpointWeightsAndCapacities) is applied to the serving group in place, over a fake
backend: new instances start beside the running ones and join the route once healthy, removed
ones leave it and stop, the others are the same containers; an UpdateEndpoint's revision of the
same content is still a blue/green replacement."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from polyhost.control.seam import EndpointSpec, VariantSpec
from tests.support.fake_backend import (
    DeployHarness,
    Start,
    container,
    deploy_harness,
    endpoint,
    eventually,
    variant,
)


def run(tmp_path: Path, scenario: Callable[[DeployHarness], Awaitable[None]]) -> None:
    async def main() -> None:
        async with deploy_harness(tmp_path / "state") as harness:
            await scenario(harness)

    asyncio.run(main())


def _serving() -> EndpointSpec:
    return endpoint(
        "ep",
        variant(container("blue")),
        variant(container("green"), name="Green", instance_count=2),
    )


def _resized(spec: EndpointSpec, revision: int, **changes: tuple[int, float]) -> EndpointSpec:
    """`spec` with (instance count, weight) per variant name, as the control plane makes it."""

    def change(v: VariantSpec) -> VariantSpec:
        if v.variant_name not in changes:
            return v
        count, weight = changes[v.variant_name]
        return replace(v, instance_count=count, initial_weight=weight)

    return replace(
        spec, variants=tuple(change(v) for v in spec.variants), revision=revision, in_place=True
    )


def _replicas(h: DeployHarness) -> dict[str, tuple[float, list[str]]]:
    route = h.router.route("ep")
    assert route is not None
    return {v.name: (v.weight, [r.instance_id for r in v.replicas]) for v in route.variants}


def test_counts_and_weights_change_in_place(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        first = _serving()
        h.deployer.apply(first)
        await h.report("ep", 1)
        before = {c.container_id: c for c in h.backend.running()}

        h.deployer.apply(_resized(first, 2, AllTraffic=(3, 0.5), Green=(1, 2.0)))
        report = await h.report("ep", 2)
        assert (report.status, report.failure_reason) == ("InService", None)
        counts = {v.variant_name: v.current_instance_count for v in report.variants}
        weights = {v.variant_name: v.current_weight for v in report.variants}
        assert (counts, weights) == (
            {"AllTraffic": 3, "Green": 1},
            {"AllTraffic": 0.5, "Green": 2.0},
        )
        assert _replicas(h) == {
            "AllTraffic": (0.5, ["i-0", "i-1", "i-2"]),
            "Green": (2.0, ["i-0"]),
        }
        await eventually(lambda: len(h.backend.running()) == 4, "green's i-1 to stop")
        running = {c.container_id: c for c in h.backend.running()}
        # Folders and ids of the first revision; the instances that stay are the same ones.
        assert sorted(running) == [
            "ep.r1.AllTraffic.i-0.blue",
            "ep.r1.AllTraffic.i-1.blue",
            "ep.r1.AllTraffic.i-2.blue",
            "ep.r1.Green.i-0.green",
        ]
        for kept in ("ep.r1.AllTraffic.i-0.blue", "ep.r1.Green.i-0.green"):
            assert running[kept] is before[kept]
        assert not before["ep.r1.Green.i-1.green"].running
        assert await h.invoke("ep", b"x", target_variant="Green") == b"ep.r1.Green.i-0.green:x"

    run(tmp_path, scenario)


def test_a_weight_alone_starts_and_stops_nothing(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        first = _serving()
        h.deployer.apply(first)
        await h.report("ep", 1)
        started = list(h.backend.started)
        h.deployer.apply(_resized(first, 2, AllTraffic=(1, 0.0)))
        await h.report("ep", 2)
        assert _replicas(h)["AllTraffic"] == (0.0, ["i-0"])
        assert h.backend.started == started and all(c.running for c in started)

    run(tmp_path, scenario)


def test_a_resize_right_after_in_service_is_still_in_place(tmp_path: Path) -> None:
    """The caller is told InService while the deployer still waits for its report to return
    (a slow control plane); a resize then must wait for that, not replace the new group."""

    async def scenario(h: DeployHarness) -> None:
        h.sink.linger_s = 0.5
        first = _serving()
        h.deployer.apply(first)
        await h.report("ep", 1)
        started = list(h.backend.started)
        h.deployer.apply(_resized(first, 2, AllTraffic=(2, 1.0)))
        report = await h.report("ep", 2)
        assert report.status == "InService"
        assert h.backend.started[: len(started)] == started and len(h.backend.started) == 4
        assert all(c.running for c in h.backend.started)
        again = _resized(_resized(first, 2, AllTraffic=(2, 1.0)), 3, Green=(1, 1.0))
        h.deployer.apply(again)
        await h.report("ep", 3)
        assert len(h.backend.started) == 4
        await eventually(lambda: len(h.backend.running()) == 3, "green's i-1 to stop")

    run(tmp_path, scenario)


def test_new_instances_that_fail_leave_the_group_as_it_was(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        first = _serving()
        h.deployer.apply(first)
        await h.report("ep", 1)
        route = h.router.route("ep")
        h.backend.plan("blue", Start(error="no room on this machine"))
        h.deployer.apply(_resized(first, 2, AllTraffic=(2, 1.0)))
        report = await h.report("ep", 2)
        assert report.status == "InService"
        assert (
            report.failure_reason is not None and "no room on this machine" in report.failure_reason
        )
        assert report.serving_config_name == "ep-cfg-1"
        assert h.router.route("ep") is route
        assert len(h.backend.running()) == 3

    run(tmp_path, scenario)


def test_an_update_endpoint_of_the_same_content_still_replaces_every_container(
    tmp_path: Path,
) -> None:
    """UpdateEndpoint restarts an endpoint (fresh credentials, say): never in place."""

    async def scenario(h: DeployHarness) -> None:
        first = _serving()
        h.deployer.apply(first)
        await h.report("ep", 1)
        h.deployer.apply(replace(first, revision=2))
        await h.report("ep", 2)
        await eventually(lambda: h.backend.running(revision=1) == [], "r1 to stop")
        assert len(h.backend.running(revision=2)) == 3

    run(tmp_path, scenario)


def test_a_resize_right_after_an_update_waits_for_the_old_group_to_stop(
    tmp_path: Path,
) -> None:
    """The update's task is still draining the group it replaced: the resize neither cancels
    that (which would leave its containers running) nor turns into a replacement."""

    async def scenario(h: DeployHarness) -> None:
        first = endpoint("ep", variant(container("blue")))
        h.deployer.apply(first)
        await h.report("ep", 1)
        old_route = h.router.route("ep")
        assert old_route is not None
        in_flight = old_route.variants[0].replicas[0]
        in_flight.outstanding = 1  # a request the old group still answers
        second = replace(first, revision=2)
        h.deployer.apply(second)
        await h.report("ep", 2)
        (serving,) = h.backend.running(revision=2)
        h.deployer.apply(_resized(second, 3, AllTraffic=(2, 1.0)))
        await asyncio.sleep(0.2)
        assert h.sink.of("ep", 3) == [] and len(h.backend.running(revision=1)) == 1

        in_flight.outstanding = 0
        report = await h.report("ep", 3)
        assert (report.status, report.failure_reason) == ("InService", None)
        assert h.backend.running(revision=1) == []
        assert [c.container_id for c in h.backend.running()] == [
            "ep.r2.AllTraffic.i-0.blue",
            "ep.r2.AllTraffic.i-1.blue",
        ]
        assert h.backend.running()[0] is serving

    run(tmp_path, scenario)


def test_every_instance_stays_its_variants_entry_after_resizes(tmp_path: Path) -> None:
    """The metric samples of a resized group: every single-container instance, kept, added or
    left after a shrink, is its variant's entry, so its requests count in
    InvocationsPerInstance (they dropped out when a kept container still pointed at the
    previous revision's container spec)."""

    async def scenario(h: DeployHarness) -> None:
        first = endpoint("ep", variant(container("blue")))
        h.deployer.apply(first)
        await h.report("ep", 1)
        # As the control plane makes each revision: from its stored documents, so every
        # container spec is a new object equal to the last.
        for revision, count in ((2, 3), (3, 2)):
            resized = _resized(first, revision, AllTraffic=(count, 1.0))
            fresh = tuple(
                replace(v, containers=tuple(replace(c) for c in v.containers))
                for v in resized.variants
            )
            h.deployer.apply(replace(resized, variants=fresh))
            await h.report("ep", revision)
        samples = [s for s in h.deployer.container_samples() if s.endpoint_name == "ep"]
        assert sorted((s.instance_id, s.entry) for s in samples) == [
            ("i-0", True),
            ("i-1", True),
        ]

    run(tmp_path, scenario)
