"""Keeps a serving container alive: one that exits, or stops passing `/ping`, is restarted.

Two troubles are watched, cheaply: the process's exit (polled every POLL_S, no I/O) and its
health (one `/ping` per `health_check_interval_s`, each bounded by the contract's 2 s). A live
process whose ping fails `health_check_failures` times in a row is taken for hung: it is stopped
(SIGTERM, then SIGKILL after the stop grace) and started again like one that exited.

While a container is down its route is marked unavailable with the reason, so its requests get
a clear 503 at once and the other containers of the endpoint keep serving undisturbed. Every
restart counts in `RunningContainer.restarts` (the `polyhost_container_restarts` metric), and
restarts back off exponentially while a container keeps failing soon after coming back.

A container on another machine (Ray) can also be *lost* with its node: then its instance is
withdrawn from routing at once (the group tells the deployer, which republishes the route
without it and reports the lower CurrentInstanceCount), the calls in flight to it end with a
503 naming the node, and the restart places the instance again elsewhere; once every
container of the instance is back, it is routed to again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from polyhost.backends.base import lost_reason
from polyhost.deploy.failure import DeployFailure
from polyhost.deploy.health import HealthWatch, connector, ping, wait_healthy
from polyhost.deploy.node_pool import NodeAwarePool
from polyhost.deploy.running import RunningContainer, RunningGroup
from polyhost.deploy.starter import GroupStarter

log = logging.getLogger("polyhost.deploy")

POLL_S = 0.2
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 30.0  # a container up this long has its backoff reset


@dataclass(frozen=True)
class Trouble:
    """Why a container needs a restart: for its route (`reason`) and the server log (`event`)."""

    reason: str
    event: str
    alive: bool  # the process still runs (unhealthy) and must be stopped first
    lost: bool = False  # gone with its node: the instance is withdrawn until it is back


async def watch(
    starter: GroupStarter, group: RunningGroup, container: RunningContainer
) -> Trouble | None:
    """Wait until the container exits or fails its health checks; None once the group stops."""
    loop = asyncio.get_running_loop()
    health = HealthWatch(
        starter.health_check_interval_s,
        starter.health_check_failures,
        due=loop.time() + starter.health_check_interval_s,
    )
    while not group.stopping:
        handle = container.handle
        lost = lost_reason(handle) if handle is not None else None
        if lost is not None:
            reason = f"{lost}; the instance is being placed again"
            return Trouble(reason, reason, alive=False, lost=True)
        code = handle.exit_code() if handle is not None else -1
        if code is not None:
            return Trouble(f"it exited with code {code}", f"exited with code {code}", alive=False)
        assert handle is not None
        asked, container.restart_reason = container.restart_reason, None
        if asked is not None:
            return Trouble(asked, asked, alive=True)
        now = loop.time()
        if now < health.due:
            await asyncio.sleep(min(POLL_S, health.due - now))
            continue
        healthy = await ping(handle.host, handle.port, connect=connector(container))
        if group.stopping or handle.exit_code() is not None:
            continue  # an exit explains a failed ping better: the loop reports it
        if health.record(healthy, loop.time()):
            return Trouble(
                f"it failed {health.failures} health checks in a row",
                f"failed {health.failures} health checks (/ping) in a row",
                alive=True,
            )
    return None


async def supervise(
    starter: GroupStarter, group: RunningGroup, container: RunningContainer
) -> None:
    loop = asyncio.get_running_loop()
    failures = 0
    up_since = loop.time()
    route = container.route
    assert route is not None
    pool_aborted = False  # the pool ended its calls for a lost node: it is replaced at restart
    while not group.stopping:
        trouble = await watch(starter, group, container)
        if trouble is None or group.stopping:
            return
        if loop.time() - up_since > STABLE_AFTER_S:
            failures = 0
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * (2**failures))
        failures += 1
        container.restarts += 1
        route.available = False
        route.unavailable_reason = (
            f"{trouble.reason} and is being restarted (restart {container.restarts})"
        )
        route.pool.close()
        if trouble.lost:
            pool_aborted = True
            if isinstance(route.pool, NodeAwarePool):
                route.pool.abort(trouble.reason)
            group.withdraw(container.instance)
        log.warning(
            "container %s of endpoint %s %s; restarting in %.1fs",
            container.spec.hostname,
            group.spec.endpoint_name,
            trouble.event,
            delay,
        )
        if trouble.alive and container.handle is not None:
            await container.handle.stop(starter.stop_grace_s)
        await asyncio.sleep(delay)
        if group.stopping:
            return
        try:
            launched = loop.time()
            new_handle = await starter.launch(container)
            await wait_healthy(container, new_handle, container.startup_timeout_s)
            container.record_setup(loop.time() - launched)
        except DeployFailure as failure:
            log.warning("restart of %s failed: %s", container.spec.hostname, failure.reason)
            if container.handle is not None and container.handle.exit_code() is None:
                await container.handle.stop(1.0)
            continue
        up_since = loop.time()
        route.pool.close()
        handle = container.handle
        address = _address(route.pool)
        moved = (
            handle is not None and address[0] is not None and address != (handle.host, handle.port)
        )
        if pool_aborted or moved:
            route.pool = starter.pool_for(container)  # placed again: another node or port
            pool_aborted = False
        if route.multi_model is not None:
            route.multi_model.restarted()
        route.available = True
        route.unavailable_reason = ""
        group.restore(container.instance)
        log.info(
            "container %s of endpoint %s is back", container.spec.hostname, group.spec.endpoint_name
        )


def _address(pool: object) -> tuple[str | None, int | None]:
    return getattr(pool, "host", None), getattr(pool, "port", None)
