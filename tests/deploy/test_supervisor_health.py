"""A live container whose /ping keeps failing is restarted, while its neighbour serves on.

Real containers (the process backend, tests/support/containers/faulty.py) under the real
deployer, router and supervisor, in the test's event loop. The container under test is healthy
for a second, then answers /ping with 503 while its process lives on. The bounds held: it is
restarted after `health_check_failures` failed checks in a row (never before, never a second
process alongside), its requests meanwhile get a 503 that says why, the restart is counted for
the metrics, and its neighbour never fails a request.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
import pytest

from polyhost.backends.process.backend import ProcessBackend
from polyhost.backends.process.container import ProcessContainer
from polyhost.control.seam import ContainerSpec, EndpointSpec, VariantSpec
from polyhost.deploy.deployer import EndpointDeployer
from polyhost.deploy.running import RunningContainer
from polyhost.errors import ServiceUnavailable
from polyhost.router.router import InvokeRequest, Router
from tests.backends.launch import ECHO, FAULTY, backend_for, wait_for

FAILURES = 3


def spec(*containers: ContainerSpec) -> EndpointSpec:
    return EndpointSpec(
        endpoint_name="ep",
        endpoint_arn="arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep",
        endpoint_config_name="ep",
        variants=(
            VariantSpec(
                variant_name="AllTraffic", model_name="m", containers=containers, mode="Direct"
            ),
        ),
        revision=1,
    )


def run(
    tmp_path: Path, scenario: Callable[[EndpointDeployer, Router, ProcessBackend], Awaitable[None]]
) -> None:
    backend = backend_for(
        tmp_path,
        {"test/faulty": FAULTY, "test/echo": ECHO},
        health_check_interval_s=0.2,
        health_check_failures=FAILURES,
        stop_grace_s=2.0,
    )
    settings = backend._settings
    router = Router(settings)
    deployer = EndpointDeployer(settings, backend, router)

    async def main() -> None:
        deployer.start(asyncio.get_running_loop())
        try:
            await scenario(deployer, router, backend)
        finally:
            await deployer.shutdown()

    asyncio.run(main())


def running(deployer: EndpointDeployer, hostname: str) -> RunningContainer:
    (group,) = deployer.groups()
    (found,) = [c for c in group.containers if c.spec.hostname == hostname]
    return found


async def invoke(router: Router, hostname: str) -> bytes:
    result = await router.invoke("ep", InvokeRequest(b"x", target_container=hostname))
    return result.body


def test_a_container_that_stops_passing_ping_is_restarted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sick = ContainerSpec(
        "sick",
        "test/faulty",
        environment={"FAULT": "ping-then-stop-pinging", "FAULT_AFTER_S": "1", "FAULT_NAME": "s"},
    )
    neighbour = ContainerSpec("neighbour", "test/echo", environment={"ECHO_NAME": "n"})

    async def scenario(deployer: EndpointDeployer, router: Router, _: ProcessBackend) -> None:
        deployer.apply(spec(sick, neighbour))
        await wait_for(lambda: router.route("ep") is not None, "the endpoint to serve")
        container = running(deployer, "sick")
        route = container.route
        assert route is not None and isinstance(container.handle, ProcessContainer)
        first = psutil.Process(container.handle.pid)
        assert await invoke(router, "sick") == b"s:x"

        # Down: a clear, retryable 503 naming the container and why, while the neighbour serves.
        saw_unavailable = False
        give_up = asyncio.get_running_loop().time() + 30  # only so a failure cannot hang
        while not saw_unavailable:
            assert asyncio.get_running_loop().time() < give_up, "never taken out of service"
            assert await invoke(router, "neighbour") == b"n:x"
            try:
                await invoke(router, "sick")
            except ServiceUnavailable as error:
                # Restart 1, or a later one if this loop was slow to look (a loaded machine).
                assert re.fullmatch(
                    r"Container sick of endpoint ep is unavailable: it failed 3 health checks "
                    r"in a row and is being restarted \(restart \d+\)\. Retry shortly\.",
                    error.message,
                ), error.message
                saw_unavailable = True
            await asyncio.sleep(0.02)
        samples = {s.container_name: s for s in deployer.container_samples()}
        assert samples["sick"].up is False and samples["sick"].restarts >= 1
        assert samples["neighbour"].restarts == 0

        # Back: a new process answers (the old one was stopped, not left beside it).
        await wait_for(lambda: route.available, "the restarted container to serve", 30)
        assert await invoke(router, "sick") == b"s:x"
        assert not first.is_running() or first.status() == psutil.STATUS_ZOMBIE
        assert isinstance(container.handle, ProcessContainer)
        assert container.handle.pid != first.pid
        assert container.restarts >= 1

    with caplog.at_level(logging.WARNING, logger="polyhost.deploy"):
        run(tmp_path, scenario)
    assert "failed 3 health checks (/ping) in a row; restarting in" in caplog.text


def test_a_healthy_busy_container_is_never_restarted(tmp_path: Path) -> None:
    """Checks that pass keep the count at zero: slow requests are not a failed health check."""
    busy = ContainerSpec("busy", "test/echo", environment={"ECHO_NAME": "b"})

    async def scenario(deployer: EndpointDeployer, router: Router, _: ProcessBackend) -> None:
        deployer.apply(spec(busy))
        await wait_for(lambda: router.route("ep") is not None, "the endpoint to serve")
        request = InvokeRequest(b"x", target_container="busy", custom_attributes=b"sleep=1.5")
        # Several health checks come and go while the container is busy answering.
        results = await asyncio.gather(*(router.invoke("ep", request) for _ in range(3)))
        assert [r.body for r in results] == [b"b:x"] * 3
        assert running(deployer, "busy").restarts == 0

    run(tmp_path, scenario)
