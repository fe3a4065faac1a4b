"""Waiting for an endpoint to settle, printing each change of its status as it happens.

botocore's waiters poll every 30 s and print nothing; a person deploying wants to see
`Creating → InService` as it happens, and a local server settles in seconds. So polling starts
fast and backs off, and every poll that changes what the user would see prints one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from polyhost.client.errors import CommandFailed
from polyhost.client.resources import describe_component, describe_endpoint

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

FAILED = ("Failed", "UpdateRollbackFailed", "OutOfService")
TRANSITIONS = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")


@dataclass
class Poller:
    """Intervals of 0.1 s growing to `ceiling`; `timeout_s` bounds the whole wait."""

    timeout_s: float
    ceiling: float = 2.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    started: float = field(default=0.0)
    interval: float = 0.1

    def __post_init__(self) -> None:
        self.started = self.clock()

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def expired(self) -> bool:
        return self.elapsed >= self.timeout_s

    def pause(self) -> None:
        self.sleep(self.interval)
        self.interval = min(self.interval * 1.5, self.ceiling)


def progress_line(endpoint: dict[str, Any]) -> str:
    """`Creating  AllTraffic 0/2` — the status plus each variant's instance counts."""
    parts = [str(endpoint.get("EndpointStatus", "?"))]
    for variant in endpoint.get("ProductionVariants") or []:
        current = variant.get("CurrentInstanceCount")
        desired = variant.get("DesiredInstanceCount")
        if current is not None and desired is not None:
            parts.append(f"{variant.get('VariantName')} {current}/{desired}")
    return "  ".join(parts)


def wait_in_service(
    sm: SageMakerClient, name: str, config_name: str, poller: Poller, out: TextIO
) -> dict[str, Any]:
    """Poll until `name` serves `config_name`; CommandFailed with the FailureReason otherwise."""
    shown = ""
    while True:
        endpoint = describe_endpoint(sm, name)
        if endpoint is None:
            raise CommandFailed(f"endpoint {name} disappeared while waiting (was it deleted?)")
        status = str(endpoint.get("EndpointStatus"))
        reason = str(endpoint.get("FailureReason") or "")
        line = progress_line(endpoint)
        if line != shown:
            print(f"  {poller.elapsed:6.1f}s  {name}: {line}", file=out, flush=True)
            shown = line
        if status == "InService":
            serving = endpoint.get("EndpointConfigName")
            if serving == config_name:
                return endpoint
            if reason:
                raise CommandFailed(
                    f"update of endpoint {name} to {config_name} failed; it still serves "
                    f"{serving}.\nFailureReason: {reason}"
                )
        elif status in FAILED:
            raise CommandFailed(
                f"endpoint {name} is {status}.\nFailureReason: {reason or '(none given)'}"
            )
        elif status == "Deleting":
            raise CommandFailed(f"endpoint {name} is being deleted")
        if poller.expired():
            raise CommandFailed(
                f"gave up after {poller.timeout_s:g}s: endpoint {name} is still {status}. "
                "The server carries on; `polyhost ls` shows where it got to."
            )
        poller.pause()


def wait_settled(sm: SageMakerClient, name: str, poller: Poller) -> dict[str, Any] | None:
    """Poll until `name` is in no transition (None once it is gone)."""
    while True:
        endpoint = describe_endpoint(sm, name)
        if endpoint is None or endpoint.get("EndpointStatus") not in TRANSITIONS:
            return endpoint
        if poller.expired():
            raise CommandFailed(
                f"gave up after {poller.timeout_s:g}s: endpoint {name} is still "
                f"{endpoint.get('EndpointStatus')}"
            )
        poller.pause()


def wait_deleted(sm: SageMakerClient, name: str, poller: Poller) -> None:
    while describe_endpoint(sm, name) is not None:
        if poller.expired():
            raise CommandFailed(
                f"gave up after {poller.timeout_s:g}s: endpoint {name} is still being deleted"
            )
        poller.pause()


COMPONENT_TRANSITIONS = frozenset({"Creating", "Updating", "Deleting"})


def wait_component(sm: SageMakerClient, name: str, poller: Poller) -> dict[str, Any]:
    """Poll an inference component until it is in no transition (botocore has no waiter)."""
    while True:
        found = describe_component(sm, name)
        if found is None:
            raise CommandFailed(f"inference component {name} disappeared while waiting")
        if found.get("InferenceComponentStatus") not in COMPONENT_TRANSITIONS:
            return found
        if poller.expired():
            raise CommandFailed(
                f"gave up after {poller.timeout_s:g}s: inference component {name} is still "
                f"{found.get('InferenceComponentStatus')}"
            )
        poller.pause()
