"""What the dashboard shows of how each endpoint is hosted now, beyond DescribeEndpoint.

DescribeEndpoint says Updating while a blue/green shift runs, lists a shadow variant apart, and
shows a serverless variant's ServerlessConfig; it does not say how far the shift is, what the
shadow's copies did, or whether the serverless variant has a container running. Those live on
the event loop, in the deployer (its serving groups, each deployment's `DeploymentProgress`)
and in the router (the shadow mirror's bounds, each serverless variant's gate), and are read
here, on the loop, without I/O, into frozen values the admin API renders in a worker thread.

Only what the deployer and the router already expose is read (`groups()`,
`deployment_progress()`, `serverless_gates()`, `shadows`). The one thing the view keeps is each
serverless variant's last cold start as it saw it while warm: the container that knew it stops
when the variant goes cold, and the metric history has it only if the container lived through
a recording.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from polyhost.deploy.progress import DeploymentProgress

if TYPE_CHECKING:  # the admin API needs the values only, not the deployer's imports
    from polyhost.deploy.deployer import EndpointDeployer
    from polyhost.deploy.running import RunningContainer, RunningGroup
    from polyhost.router.router import Router


@dataclass(frozen=True, slots=True)
class VariantTraffic:
    """A variant's requests since its containers started, from the same counters the metrics
    read: live (no 10 s recording to wait for), which a shadow test wants beside production."""

    invocations: int
    errors_4xx: int
    errors_5xx: int
    mean_latency_ms: float | None  # ContainerLatency's mean; None before the first answer


@dataclass(frozen=True, slots=True)
class ServerlessState:
    """A serverless variant's container and gate now. `warm`: a container of it is routed;
    `last_setup_s`: the seconds its container took to pass its first ping (the ModelSetupTime
    of the cold start that started it): the running container's, or once cold the last one
    this view saw; None when it saw none (the admin API then looks in the metric history)."""

    memory_mb: int
    max_concurrency: int
    provisioned_concurrency: int | None
    warm: bool
    starting: bool
    in_flight: int
    cold_starts: int  # counted by the gate since the server started
    throttled: int  # requests the gate refused past MaxConcurrency since the server started
    last_setup_s: float | None
    containers: tuple[str, ...]  # the variant's container hostnames (ModelSetupTime's series)


@dataclass(frozen=True, slots=True)
class VariantHosting:
    name: str
    shadow: bool
    routed_instances: int
    traffic: VariantTraffic
    serverless: ServerlessState | None


@dataclass(frozen=True, slots=True)
class EndpointHosting:
    name: str
    deployment: DeploymentProgress | None
    variants: tuple[VariantHosting, ...]


@dataclass(frozen=True, slots=True)
class HostingSnapshot:
    """Every endpoint asked for that is hosted now, and the server's shadow-copy counters:
    the bounds (`router/shadow.py`) are the server's, so the copies dropped past them are
    counted for the server as a whole, not per endpoint."""

    endpoints: Mapping[str, EndpointHosting]
    shadow_sent: int
    shadow_dropped: int
    shadow_in_flight: int


# Called on the event loop with the endpoint names the answer is about.
HostingSource = Callable[[Iterable[str]], HostingSnapshot]


class HostingView:
    """A `HostingSource` over the server's deployer and router (read on the event loop)."""

    def __init__(self, deployer: EndpointDeployer, router: Router) -> None:
        self._deployer = deployer
        self._router = router
        # (endpoint, variant) -> the last cold start's seconds seen while warm; only entries
        # of serverless variants hosted now are kept.
        self._last_setup: dict[tuple[str, str], float] = {}

    def __call__(self, names: Iterable[str]) -> HostingSnapshot:
        groups: dict[str, RunningGroup] = {
            group.spec.endpoint_name: group
            for group in self._deployer.groups()
            if group.spec.component is None  # a component's copies belong to its endpoint
        }
        found: dict[str, EndpointHosting] = {}
        for name in names:
            group = groups.get(name)
            progress = self._deployer.deployment_progress(name)
            if group is None and progress is None:
                continue
            variants = () if group is None else self._variants(name, group)
            found[name] = EndpointHosting(name, progress, variants)
        hosted = {
            (name, v.variant_name)
            for name, group in groups.items()
            for v in group.spec.variants
            if v.serverless is not None
        }
        for gone in set(self._last_setup) - hosted:
            del self._last_setup[gone]
        shadows = self._router.shadows
        return HostingSnapshot(
            endpoints=found,
            shadow_sent=shadows.sent,
            shadow_dropped=shadows.dropped,
            shadow_in_flight=shadows.inflight,
        )

    def _variants(self, name: str, group: RunningGroup) -> tuple[VariantHosting, ...]:
        gates = self._router.serverless_gates(name)
        out = []
        for variant in group.spec.variants:
            routed = [
                c
                for c in group.containers
                if c.variant.variant_name == variant.variant_name and c.route is not None
            ]
            serverless = None
            if variant.serverless is not None:
                gate = gates.get(variant.variant_name)
                setups = [c.setups[-1][1] for c in routed if c.setups]
                key = (name, variant.variant_name)
                if setups:
                    self._last_setup[key] = max(setups)
                serverless = ServerlessState(
                    memory_mb=variant.serverless.memory_mb,
                    max_concurrency=variant.serverless.max_concurrency,
                    provisioned_concurrency=variant.serverless.provisioned_concurrency,
                    warm=any(c.route is not None and c.route.available for c in routed),
                    starting=gate is not None and gate.starting,
                    in_flight=0 if gate is None else gate.in_flight,
                    cold_starts=0 if gate is None else gate.cold_starts,
                    throttled=0 if gate is None else gate.throttled,
                    last_setup_s=self._last_setup.get(key),
                    containers=tuple(c.hostname for c in variant.containers),
                )
            out.append(
                VariantHosting(
                    name=variant.variant_name,
                    shadow=variant.shadow,
                    routed_instances=len({c.stream.instance_id for c in routed}),
                    traffic=_traffic(routed),
                    serverless=serverless,
                )
            )
        return tuple(out)


def _traffic(containers: list[RunningContainer]) -> VariantTraffic:
    """The variant's requests as it counts them: on the containers requests enter through
    (every one in Direct mode, the first of a Serial pipeline), as the recorder does."""
    invocations = errors_4xx = errors_5xx = answered = 0
    latency_us = 0.0
    for container in containers:
        variant = container.variant
        if variant.mode != "Direct" and container.spec is not variant.containers[0]:
            continue
        assert container.route is not None
        counters = container.route.counters
        invocations += counters.invocations
        errors_4xx += counters.errors_4xx
        errors_5xx += counters.errors_5xx
        answered += counters.container_latency.count
        latency_us += counters.container_latency.total
    return VariantTraffic(
        invocations=invocations,
        errors_4xx=errors_4xx,
        errors_5xx=errors_5xx,
        mean_latency_ms=latency_us / answered / 1000.0 if answered else None,
    )
