"""Where a deployment with a traffic policy stands, for the dashboard: UpdateEndpoint's
blue/green shift (ALL_AT_ONCE, CANARY, LINEAR) or a rolling update, step by step.

The deployer keeps one `DeploymentProgress` per endpoint while such a deployment runs (on the
event loop, replaced whole at each change, so a reader on the loop always sees one consistent
step) and drops it when the deployment ends, either way. SageMaker's DescribeEndpoint says only
Updating or RollingBack; a user watching a canary wants to see how far it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# What the deployment is doing now:
#   Starting     the new fleet's instances of the next step are being started;
#   Baking       a step takes its share of traffic for WaitIntervalInSeconds, alarms watched;
#   Terminating  all traffic is on the new fleet, TerminationWaitInSeconds before the old stops;
#   RollingBack  an alarm or a failure sends traffic back to the old fleet.
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
