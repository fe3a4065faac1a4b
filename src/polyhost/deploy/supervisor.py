"""Keeps a serving container alive: a container that exits is restarted with backoff.

While it is down its route is marked unavailable, so its requests get a clear 503 at once and
the other containers of the endpoint keep serving undisturbed.
"""

from __future__ import annotations

import asyncio
import logging

from polyhost.deploy.group import (
    DeployFailure,
    GroupStarter,
    RunningContainer,
    RunningGroup,
    wait_healthy,
)

log = logging.getLogger("polyhost.deploy")

POLL_S = 0.2
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 30.0  # a container up this long has its backoff reset


async def supervise(
    starter: GroupStarter, group: RunningGroup, container: RunningContainer
) -> None:
    loop = asyncio.get_running_loop()
    failures = 0
    up_since = loop.time()
    route = container.route
    assert route is not None
    while not group.stopping:
        handle = container.handle
        code = handle.exit_code() if handle is not None else -1
        if code is None:
            await asyncio.sleep(POLL_S)
            continue
        if group.stopping:
            return
        if loop.time() - up_since > STABLE_AFTER_S:
            failures = 0
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * (2**failures))
        failures += 1
        container.restarts += 1
        route.available = False
        route.unavailable_reason = (
            f"it exited with code {code} and is being restarted (restart {container.restarts})"
        )
        route.pool.close()
        log.warning(
            "container %s of endpoint %s exited with code %s; restarting in %.1fs",
            container.spec.hostname,
            group.spec.endpoint_name,
            code,
            delay,
        )
        await asyncio.sleep(delay)
        if group.stopping:
            return
        try:
            new_handle = await starter.launch(container)
            await wait_healthy(container, new_handle, container.startup_timeout_s)
        except DeployFailure as failure:
            log.warning("restart of %s failed: %s", container.spec.hostname, failure.reason)
            if container.handle is not None and container.handle.exit_code() is None:
                await container.handle.stop(1.0)
            continue
        up_since = loop.time()
        route.pool.close()
        route.available = True
        route.unavailable_reason = ""
        log.info(
            "container %s of endpoint %s is back", container.spec.hostname, group.spec.endpoint_name
        )
