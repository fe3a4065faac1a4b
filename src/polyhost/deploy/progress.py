"""Where a deployment with a traffic policy stands, for the dashboard: UpdateEndpoint's
blue/green shift (ALL_AT_ONCE, CANARY, LINEAR) or a rolling update, step by step.

The deployer keeps one `DeploymentProgress` per endpoint while such a deployment runs (on the
event loop, replaced whole at each change, so a reader on the loop always sees one consistent
step) and drops it when the deployment ends, either way. SageMaker's DescribeEndpoint says only
Updating or RollingBack; a user watching a canary wants to see how far it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, replace
from typing import Literal

# What the deployment is doing now:
#   Starting     the new fleet's instances of the next step are being started;
#   Baking       a step takes its share of traffic for WaitIntervalInSeconds, alarms watched;
#   Terminating  all traffic is on the new fleet, TerminationWaitInSeconds before the old stops;
#   RollingBack  an alarm or a failure sends traffic back to the old fleet.
# A rolling update goes Starting (a batch of new instances), Baking (the batch routed beside the
# old fleet), Terminating (a batch of old instances drained and stopped), batch after batch.
Phase = Literal["Starting", "Baking", "Terminating", "RollingBack"]
Policy = Literal["ALL_AT_ONCE", "CANARY", "LINEAR", "ROLLING"]


@dataclass(frozen=True)
class DeploymentProgress:
    endpoint_name: str
    policy: Policy
    phase: Phase
    from_config: str  # the EndpointConfigName serving before
    to_config: str  # the one being deployed
    new_instances: int  # instances of the new fleet taking traffic now
    wanted_instances: int  # the new fleet's size once done
    old_instances: int  # instances of the old fleet still taking traffic
    started_at: float  # time.time() the deployment began
    phase_ends_at: float | None = None  # time.time() a bake or termination wait ends
    reason: str | None = None  # why it rolls back (the alarm, or the failure)


# Told of each change of an endpoint's entry: the new entry, or None once it is removed.
ProgressWatcher = Callable[[str, "DeploymentProgress | None"], None]


class ProgressTracker:
    """Keeps one deployment's entry in the deployer's board (`EndpointDeployer._progress`):
    replaced whole at each phase, removed at the end, `notify` told of each change (a reader
    polling the board may miss a phase that lasts less than its interval; a watcher does not).
    A deployment superseded by a newer one of the same endpoint (whose entry took its place)
    touches the board no more."""

    def __init__(
        self,
        board: MutableMapping[str, DeploymentProgress],
        first: DeploymentProgress,
        notify: ProgressWatcher | None = None,
    ) -> None:
        self._board = board
        self._entry = first
        self._notify = notify
        board[first.endpoint_name] = first
        self._told(first)

    def _told(self, entry: DeploymentProgress | None) -> None:
        if self._notify is not None:
            self._notify(self._entry.endpoint_name, entry)

    @property
    def current(self) -> DeploymentProgress:
        return self._entry

    def phase(
        self,
        phase: Phase,
        *,
        new: int,
        old: int,
        wait_s: float | None = None,
        reason: str | None = None,
    ) -> None:
        """Now `phase`, with `new` and `old` instances taking traffic; `wait_s`: the phase
        ends that long from now (a bake, a termination wait)."""
        name = self._entry.endpoint_name
        if self._board.get(name) is not self._entry:
            return
        entry = self._entry
        same = (entry.phase, entry.new_instances, entry.old_instances, entry.reason)
        if wait_s is None and entry.phase_ends_at is None and same == (phase, new, old, reason):
            return  # nothing changed (the first batch's start is the deployment's)
        self._entry = replace(
            self._entry,
            phase=phase,
            new_instances=new,
            old_instances=old,
            phase_ends_at=None if wait_s is None else time.time() + wait_s,
            reason=reason,
        )
        self._board[name] = self._entry
        self._told(self._entry)

    def end(self) -> None:
        """The deployment ended (either way): its entry goes."""
        name = self._entry.endpoint_name
        if self._board.get(name) is self._entry:
            del self._board[name]
            self._told(None)
