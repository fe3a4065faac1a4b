"""The deployer in process, over a fake backend: what it publishes, reports, starts and stops.

test_deployer.py drives a real server with real container processes; these tests drive
`EndpointDeployer` directly, with containers the test controls (tests/support/fake_backend.py),
so each lifecycle rule is checked on its own and by events only (reports, routes, which
containers run), never by how long something took:
create publishes a route once every container is healthy; a failing container fails the
endpoint with a reason that names it and quotes its log; an update swaps only to a healthy
group and then stops the old one; a failed update leaves the old one serving; delete withdraws
the route and stops every container.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from polyhost.errors import InvokeValidationError, ServiceUnavailable
from polyhost.router.table import EndpointRoute
from tests.support.fake_backend import (
    IMAGE,
    SIGTERM_EXIT,
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


def hostnames(route: EndpointRoute) -> list[list[list[str]]]:
    """variant -> replica -> container hostnames, in routing order."""
    return [
        [[c.hostname for c in replica.containers] for replica in v.replicas] for v in route.variants
    ]


# -- create -----------------------------------------------------------------------------------
def test_apply_publishes_the_route_and_reports_in_service(tmp_path: Path) -> None:
    spec = endpoint(
        "ep",
        variant(container("pre"), container("model"), instance_count=2),
        variant(container("solo"), name="Canary", weight=0.0),
    )

    async def scenario(h: DeployHarness) -> None:
        h.deployer.apply(spec)
        report = await h.report("ep", 1)
        assert report.status == "InService"
        assert report.failure_reason is None
        assert report.serving_config_name == "ep-cfg-1"
        assert [
            (v.variant_name, v.current_instance_count, v.desired_instance_count, v.status)
            for v in report.variants
        ] == [("AllTraffic", 2, 2, "InService"), ("Canary", 1, 1, "InService")]
        assert report.variants[0].deployed_images == (IMAGE, IMAGE)

        # The route is published before the report: whoever reads InService can invoke.
        route = h.router.route("ep")
        assert route is not None
        assert hostnames(route) == [[["pre", "model"], ["pre", "model"]], [["solo"]]]
        assert [(v.name, v.weight, v.mode) for v in route.variants] == [
            ("AllTraffic", 1.0, "Serial"),
            ("Canary", 0.0, "Serial"),
        ]
        assert route.variants[0].replicas[1].containers[0].log_stream == "AllTraffic/i-1/pre"

        # Five containers, each started once and pinged before the route was published.
        assert sorted(c.hostname for c in h.backend.started) == [
            "model",
            "model",
            "pre",
            "pre",
            "solo",
        ]
        assert all(c.running and c.pings >= 1 for c in h.backend.started)

        # A request goes through a real socket to the fake containers, in pipeline order.
        body = await h.invoke("ep", b"hi", target_variant="AllTraffic")
        assert body == b"ep.r1.AllTraffic.i-0.model:ep.r1.AllTraffic.i-0.pre:hi"

        assert [s.name for s in h.deployer.log_streams("ep")] == [
            "AllTraffic/i-0/pre",
            "AllTraffic/i-0/model",
            "AllTraffic/i-1/pre",
            "AllTraffic/i-1/model",
            "Canary/i-0/solo",
        ]

    run(tmp_path, scenario)


def test_containers_get_their_spec(tmp_path: Path) -> None:
    """Each container is launched with its own environment, a port of its own and a log."""
    spec = endpoint("ep", variant(container("a", GREETING="hello"), container("b")))

    async def scenario(h: DeployHarness) -> None:
        h.deployer.apply(spec)
        assert (await h.report("ep", 1)).status == "InService"
        a, b = h.backend.containers("a")[0], h.backend.containers("b")[0]
        assert a.launch.environment.get("GREETING") == "hello"
        assert "GREETING" not in b.launch.environment
        assert a.launch.image == IMAGE
        assert a.port != b.port
        assert a.launch.log_path != b.launch.log_path

    run(tmp_path, scenario)


def test_an_endpoint_is_creating_until_its_group_is_healthy(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def scenario(h: DeployHarness) -> None:
        h.backend.plan("model", Start(gate=gate))
        h.deployer.apply(endpoint("ep", variant(container("model"))))
        await eventually(lambda: h.backend.starting == 1, "the start to be under way")
        with pytest.raises(InvokeValidationError) as excinfo:
            await h.invoke("ep")
        assert "its status is Creating" in excinfo.value.message
        assert h.sink.reports == []

        gate.set()
        assert (await h.report("ep", 1)).status == "InService"
        assert await h.invoke("ep", b"y") == b"ep.r1.AllTraffic.i-0.model:y"

    run(tmp_path, scenario)


def test_applying_the_same_revision_again_starts_nothing(tmp_path: Path) -> None:
    spec = endpoint("ep", variant(container("model")))

    async def scenario(h: DeployHarness) -> None:
        h.deployer.apply(spec)
        await h.report("ep", 1)
        route = h.router.route("ep")
        h.deployer.apply(spec)
        # A later apply of another endpoint is a marker: once it is served, the repeat was seen.
        h.deployer.apply(endpoint("marker", variant(container("m"))))
        await h.report("marker", 1)
        assert len(h.backend.containers("model")) == 1
        assert h.router.route("ep") is route
        assert len(h.sink.of("ep")) == 1

    run(tmp_path, scenario)


# -- failures at start --------------------------------------------------------------------------
def test_a_container_that_exits_at_start_fails_the_endpoint_quoting_its_log(
    tmp_path: Path,
) -> None:
    spec = endpoint(
        "ep",
        variant(
            container("good"),
            container("bad", FAKE_EXIT_AT_START="3", FAKE_LOG="bad: no model file in /opt/ml"),
        ),
    )

    async def scenario(h: DeployHarness) -> None:
        h.deployer.apply(spec)
        report = await h.report("ep", 1)
        assert report.status == "Failed"
        assert report.failure_reason == (
            "Container bad for production variant AllTraffic exited with code 3 before it "
            "passed the ping health check. Last log lines: bad: no model file in /opt/ml"
        )
        assert [(v.current_instance_count, v.status) for v in report.variants] == [(0, "Failed")]
        assert report.serving_config_name is None

        with pytest.raises(InvokeValidationError) as excinfo:
            await h.invoke("ep")
        assert "its status is Failed" in excinfo.value.message
        assert h.router.route("ep") is None
        # The failed attempt's logs stay readable for the caller to look at.
        assert [s.hostname for s in h.deployer.log_streams("ep")] == ["good", "bad"]

    run(tmp_path, scenario)


def test_a_container_that_wrote_nothing_says_so(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        h.deployer.apply(endpoint("ep", variant(container("mute", FAKE_EXIT_AT_START="1"))))
        report = await h.report("ep", 1)
        assert report.failure_reason is not None
        assert report.failure_reason.endswith(
            "exited with code 1 before it passed the ping health check. The container wrote "
            "nothing to its log."
        )

    run(tmp_path, scenario)


def test_a_container_that_never_passes_ping_fails_within_its_startup_timeout(
    tmp_path: Path,
) -> None:
    """The variant's startup timeout (ContainerStartupHealthCheckTimeoutInSeconds) applies."""
    spec = endpoint(
        "ep",
        variant(
            container("slow", FAKE_NO_LISTEN="1", FAKE_LOG="slow: loading weights"),
            startup_timeout_s=1,
        ),
    )

    async def scenario(h: DeployHarness) -> None:
        h.deployer.apply(spec)
        report = await h.report("ep", 1)
        assert report.status == "Failed"
        assert report.failure_reason == (
            "Container slow for production variant AllTraffic did not pass the ping health "
            "check within 1 seconds. Last log lines: slow: loading weights"
        )
        (slow,) = h.backend.containers("slow")
        assert not slow.running and slow.stop_calls == [h.settings.stop_grace_s]

    run(tmp_path, scenario)


def test_a_listening_container_that_never_passes_ping_is_started_once(tmp_path: Path) -> None:
    spec = endpoint("ep", variant(container("sick", FAKE_UNHEALTHY="1")))

    async def scenario(h: DeployHarness) -> None:
        h.deployer.apply(spec)
        report = await h.report("ep", 1)
        assert report.failure_reason is not None
        assert "did not pass the ping health check within 0.3 seconds" in report.failure_reason
        assert len(h.backend.containers("sick")) == 1

    async def main() -> None:
        # The server default applies when the variant sets no startup timeout.
        async with deploy_harness(tmp_path / "state", default_startup_timeout_s=0.3) as h:
            await scenario(h)

    asyncio.run(main())


def test_a_container_the_backend_cannot_launch_fails_the_endpoint(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        h.backend.plan("model", Start(error="no program for image fake:latest"))
        h.deployer.apply(endpoint("ep", variant(container("model"))))
        report = await h.report("ep", 1)
        assert report.status == "Failed"
        assert report.failure_reason == (
            "Container model for production variant AllTraffic could not be started: "
            "no program for image fake:latest"
        )

    run(tmp_path, scenario)


def test_a_failed_group_leaves_no_container_running(tmp_path: Path) -> None:
    gate = asyncio.Event()
    spec = endpoint("ep", variant(container("late"), container("bad", FAKE_EXIT_AT_START="3")))

    async def scenario(h: DeployHarness) -> None:
        h.backend.plan("late", Start(gate=gate))  # still launching when "bad" fails
        h.deployer.apply(spec)
        assert (await h.report("ep", 1)).status == "Failed"
        gate.set()  # the launch can now complete, after its group failed
        await eventually(lambda: h.backend.starting == 0, "the late launch to end")
        # Either the launch was abandoned, or what it started must be stopped. The bug shows
        # as a stop that never comes, so this wait is bounded tighter than the others.
        await eventually(
            lambda: not h.backend.running("late"), "the late container to stop", within_s=1.0
        )

    run(tmp_path, scenario)


# -- update (blue/green) ------------------------------------------------------------------------
def test_an_update_swaps_only_once_the_new_group_is_healthy(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        h.deployer.apply(endpoint("ep", variant(container("model"))))
        await h.report("ep", 1)
        old_route = h.router.route("ep")
        assert old_route is not None
        (old,) = h.backend.containers("model", revision=1)

        h.deployer.apply(
            endpoint("ep", variant(container("model", FAKE_UNHEALTHY="1")), revision=2)
        )
        new = (await eventually(lambda: h.backend.containers("model", revision=2), "r2"))[0]
        await eventually(lambda: new.pings >= 2, "the new container to fail a ping or two")
        # Up but not healthy: the old group serves on, untouched.
        assert h.router.route("ep") is old_route
        assert await h.invoke("ep", b"a") == b"ep.r1.AllTraffic.i-0.model:a"
        assert h.sink.of("ep", 2) == []
        assert old.running

        new.set_healthy(True)
        report = await h.report("ep", 2)
        assert (report.status, report.serving_config_name) == ("InService", "ep-cfg-2")
        assert report.failure_reason is None
        assert h.router.route("ep") is not old_route
        assert await h.invoke("ep", b"b") == b"ep.r2.AllTraffic.i-0.model:b"

        # The old group drains (nothing in flight here) and stops.
        await eventually(lambda: not old.running, "the old container to stop")
        assert old.exit_code() == SIGTERM_EXIT
        old_container = old_route.variants[0].replicas[0].containers[0]
        assert (old_container.available, old_container.unavailable_reason) == (
            False,
            "it is stopping",
        )
        assert h.backend.running() == [new]

    run(tmp_path, scenario)


def test_a_failed_update_leaves_the_old_group_serving(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        h.deployer.apply(endpoint("ep", variant(container("model"))))
        await h.report("ep", 1)
        route = h.router.route("ep")
        h.deployer.apply(
            endpoint(
                "ep",
                variant(container("model", FAKE_EXIT_AT_START="2", FAKE_LOG="r2: bad weights")),
                revision=2,
            )
        )
        report = await h.report("ep", 2)
        # Still InService (on the old config), and the reason says what went wrong.
        assert (report.status, report.serving_config_name) == ("InService", "ep-cfg-1")
        assert report.failure_reason == (
            "Update to endpoint config ep-cfg-2 failed: Container model for production variant "
            "AllTraffic exited with code 2 before it passed the ping health check. Last log "
            "lines: r2: bad weights"
        )
        assert [v.status for v in report.variants] == ["InService"]
        assert h.router.route("ep") is route
        assert await h.invoke("ep", b"z") == b"ep.r1.AllTraffic.i-0.model:z"
        assert [c.container_id for c in h.backend.running()] == ["ep.r1.AllTraffic.i-0.model"]

    run(tmp_path, scenario)


def test_a_newer_revision_supersedes_one_still_starting(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def scenario(h: DeployHarness) -> None:
        h.deployer.apply(endpoint("ep", variant(container("model"))))
        await h.report("ep", 1)
        h.backend.plan("model", Start(gate=gate))
        h.deployer.apply(endpoint("ep", variant(container("model")), revision=2))
        await eventually(lambda: h.backend.starting == 1, "revision 2 to be starting")
        h.deployer.apply(endpoint("ep", variant(container("model")), revision=3))
        assert (await h.report("ep", 3)).status == "InService"
        gate.set()  # revision 2's start was abandoned: opening its gate starts nothing
        assert await h.invoke("ep", b"q") == b"ep.r3.AllTraffic.i-0.model:q"
        assert h.sink.of("ep", 2) == []
        assert h.backend.containers(revision=2) == []
        await eventually(
            lambda: [c.container_id for c in h.backend.running()] == ["ep.r3.AllTraffic.i-0.model"],
            "only revision 3 to run",
        )

    run(tmp_path, scenario)


# -- delete and shutdown ------------------------------------------------------------------------
def test_remove_withdraws_the_route_and_stops_every_container(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        h.deployer.apply(endpoint("ep", variant(container("a"), container("b"), instance_count=2)))
        await h.report("ep", 1)
        h.deployer.apply(endpoint("other", variant(container("c"))))
        await h.report("other", 1)
        (group,) = [g for g in h.deployer.groups() if g.spec.endpoint_name == "ep"]

        h.deployer.remove("ep")
        await eventually(lambda: h.router.route("ep") is None, "the route to be withdrawn")
        with pytest.raises(InvokeValidationError) as excinfo:
            await h.invoke("ep")
        assert excinfo.value.message == "Endpoint ep of account 123456789012 not found."
        await eventually(
            lambda: [c.hostname for c in h.backend.running()] == ["c"],
            "the endpoint's containers to stop",
        )
        await eventually(
            lambda: all(task.done() for task in group.supervisors), "its supervisors to end"
        )
        assert all(c.stop_calls for c in h.backend.containers() if c.hostname != "c")
        # The other endpoint is untouched, and the deployer reports nothing more for ep.
        assert await h.invoke("other", b"o") == b"other.r1.AllTraffic.i-0.c:o"
        assert [r.status for r in h.sink.of("ep")] == ["InService"]
        assert h.deployer.log_streams("ep") == []

    run(tmp_path, scenario)


def test_remove_while_starting_leaves_nothing_running(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def scenario(h: DeployHarness) -> None:
        h.backend.plan("model", Start(gate=gate))
        h.deployer.apply(endpoint("ep", variant(container("model"))))
        await eventually(lambda: h.backend.starting == 1, "the start to be under way")
        h.deployer.remove("ep")
        await eventually(lambda: h.backend.starting == 0, "the start to be abandoned")
        gate.set()
        assert h.backend.started == []
        assert h.sink.of("ep") == []
        with pytest.raises(InvokeValidationError):
            await h.invoke("ep")

    run(tmp_path, scenario)


def test_shutdown_stops_every_container(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        h.deployer.apply(endpoint("one", variant(container("a"))))
        h.deployer.apply(endpoint("two", variant(container("b"), instance_count=2)))
        await h.report("one", 1)
        await h.report("two", 1)
        assert len(h.backend.running()) == 3
        await h.deployer.shutdown()
        assert h.backend.running() == []
        assert all(c.stop_calls == [h.settings.stop_grace_s] for c in h.backend.started)
        h.deployer.apply(endpoint("late", variant(container("z"))))  # ignored once closing
        await asyncio.sleep(0)
        assert h.backend.containers("z") == []

    run(tmp_path, scenario)


# -- what the metrics see -------------------------------------------------------------------------
def test_container_samples_share_the_routes_counters(tmp_path: Path) -> None:
    async def scenario(h: DeployHarness) -> None:
        h.deployer.apply(endpoint("ep", variant(container("a"), container("b"), mode="Direct")))
        await h.report("ep", 1)
        await h.invoke("ep", target_container="b")
        await h.invoke("ep", target_container="b")
        samples = {s.container_name: s for s in h.deployer.container_samples()}
        assert sorted(samples) == ["a", "b"]
        assert (samples["a"].counters.invocations, samples["b"].counters.invocations) == (0, 2)
        b = samples["b"]
        assert (b.endpoint_name, b.variant_name, b.instance_id) == ("ep", "AllTraffic", "i-0")
        assert (b.up, b.restarts) == (True, 0)
        assert b.usage is not None and b.usage.cpu_percent == 12.5

    run(tmp_path, scenario)


def test_a_stopping_container_is_refused_with_a_503(tmp_path: Path) -> None:
    """Requests that still reach an old group's route after the swap get a clear retryable no."""

    async def scenario(h: DeployHarness) -> None:
        h.deployer.apply(endpoint("ep", variant(container("model"))))
        await h.report("ep", 1)
        old_route = h.router.route("ep")
        assert old_route is not None
        h.deployer.apply(endpoint("ep", variant(container("model")), revision=2))
        await h.report("ep", 2)
        await eventually(lambda: not h.backend.running(revision=1), "the old group to stop")
        h.router.publish(old_route)  # as if a request had picked the old route up just before
        with pytest.raises(ServiceUnavailable) as excinfo:
            await h.invoke("ep")
        assert excinfo.value.message == (
            "Container model of endpoint ep is unavailable: it is stopping. Retry shortly."
        )

    run(tmp_path, scenario)
