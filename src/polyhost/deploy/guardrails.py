"""Deployment guardrails' parts (UpdateEndpoint's BlueGreenUpdatePolicy and the
RollingUpdatePolicy of an endpoint or an inference component): the route of a traffic shift,
and the watch over a bake.

During a CANARY or LINEAR shift the endpoint's route merges, per variant, every instance of
the old fleet with the new fleet's instances in the shift (`i-0` up to the step's count), so
traffic goes by capacity: with 4 old instances and a canary of 1, the canary takes about a
fifth of the requests (least outstanding requests among all five). Both fleets' replicas are
the groups' own objects: their in-flight counts carry across republishes, so a rollback can
wait for the new fleet's requests to finish before it stops it (no request is dropped).

A bake (WaitIntervalInSeconds after a step or a rolling batch, TerminationWaitInSeconds after
the whole shift) reads the state of every AutoRollbackConfiguration alarm every `ALARM_POLL_S`,
and checks the deployment's MaximumExecutionTimeoutInSeconds; either ends it with `RollBack`.
Both policies are `Watched` the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from polyhost.control.seam import AlarmReader
from polyhost.deploy.running import RunningGroup
from polyhost.router.table import EndpointRoute, ReplicaRoute, variant_over

ALARM_POLL_S = 0.25
log = logging.getLogger("polyhost.deploy")


class Watched(Protocol):
    """What a bake watches of a deployment's policy (a BlueGreenUpdate, a RollingUpdate)."""

    @property
    def alarms(self) -> tuple[str, ...]: ...

    @property
    def timeout_s(self) -> float | None: ...


class RollBack(Exception):
    """The deployment must be rolled back to the old fleet, for `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _index(replica: ReplicaRoute) -> int:
    """The position of an instance in its variant (`i-3` -> 3)."""
    try:
        return int(replica.instance_id.rsplit("-", 1)[-1])
    except ValueError:
        return 0


def shifted_route(
    old: RunningGroup, new: RunningGroup, shift: Mapping[str, int] | None
) -> EndpointRoute:
    """The endpoint's route while `shift` (per variant, the new fleet's instances in it) of
    the new fleet takes traffic beside the whole old fleet; None: the new fleet alone."""
    new_route = new.serving_route()
    assert new_route is not None
    if shift is None:
        return new_route
    old_route = old.serving_route()
    if old_route is None:
        return new_route
    joining = {v.name: v for v in new_route.variants}
    variants = []
    for variant in old_route.variants:
        other = joining.get(variant.name)
        count = shift.get(variant.name, 0)
        added = () if other is None else tuple(r for r in other.replicas if _index(r) < count)
        variants.append(variant_over(variant, variant.replicas + added))
    return old_route.with_variants(tuple(variants))


async def check(guard: Watched, alarm_state: AlarmReader | None, deadline: float | None) -> None:
    """Raise RollBack if the deployment is out of time or one of its alarms is in ALARM."""
    loop = asyncio.get_running_loop()
    if deadline is not None and loop.time() >= deadline:
        raise RollBack(
            "the deployment did not finish within its MaximumExecutionTimeoutInSeconds "
            f"({guard.timeout_s or 0:g} s)"
        )
    if alarm_state is None or not guard.alarms:
        return
    for name in guard.alarms:
        try:
            state = await asyncio.to_thread(alarm_state, name)
        except Exception:  # the alarm store closing under it: nothing to act on
            log.exception("reading the alarm %s failed", name)
            continue
        if state == "ALARM":
            raise RollBack(
                f"the alarm {name} (AutoRollbackConfiguration) went into ALARM during the "
                "deployment"
            )


async def bake(
    guard: Watched,
    seconds: float,
    alarm_state: AlarmReader | None,
    deadline: float | None,
) -> None:
    """Wait `seconds` while watching the alarms and the deadline (checked at least once)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        await check(guard, alarm_state, deadline)
        now = loop.time()
        if now >= end:
            return
        await asyncio.sleep(min(ALARM_POLL_S, end - now))
