"""The in-memory routing table: endpoint → variants → replicas → containers.

Built by the deployer once a container group is healthy and published to the router as a whole
(an atomic dict swap), so an invocation never touches the database and never sees a half-built
endpoint. The mutable parts are counters and a container's availability flag, both only touched
on the event loop thread.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field

from polyhost.control.seam import AsyncInferenceSpec, InferenceMode
from polyhost.metrics.series import ContainerCounters
from polyhost.router.multi_model import MultiModelContainer
from polyhost.router.upstream import ContainerPool


@dataclass(slots=True)
class ContainerRoute:
    hostname: str
    pool: ContainerPool
    log_stream: str  # "{variant}/{instance}/{hostname}", as SageMaker names log streams
    available: bool = True
    unavailable_reason: str = ""
    counters: ContainerCounters = field(default_factory=ContainerCounters)
    # A Mode MultiModel container: the models it has loaded (`router.multi_model`).
    multi_model: MultiModelContainer | None = None

    def __post_init__(self) -> None:
        # The model series live with the loaded-model table; the counters are where the
        # recorder and Prometheus look for every container's series.
        if self.multi_model is not None:
            self.counters.multi_model = self.multi_model.metrics


@dataclass(slots=True)
class ReplicaRoute:
    instance_id: str
    containers: tuple[ContainerRoute, ...]
    by_hostname: dict[str, ContainerRoute]
    outstanding: int = 0

    @classmethod
    def of(cls, instance_id: str, containers: tuple[ContainerRoute, ...]) -> ReplicaRoute:
        return cls(instance_id, containers, {c.hostname: c for c in containers})

    def can_serve(self, hostname: str | None) -> bool:
        """Whether a request for `hostname` (Direct) or for the whole pipeline (None) finds
        its containers available here. An unknown hostname counts as servable: the router
        answers it with the validation error that lists the hostnames."""
        if hostname is None:
            return all(c.available for c in self.containers)
        container = self.by_hostname.get(hostname)
        return container is None or container.available


@dataclass(slots=True)
class VariantRoute:
    name: str
    weight: float
    mode: InferenceMode
    replicas: tuple[ReplicaRoute, ...]
    # RoutingConfig RANDOM: a replica at random among those that can serve.
    random: bool = False
    # A shadow variant (ShadowProductionVariants): never picked for a request, it gets copies
    # of the production variant's (`router/shadow.py`).
    shadow: bool = False
    _next: int = 0

    def pick_replica(
        self, hostname: str | None = None, avoid: ReplicaRoute | None = None
    ) -> ReplicaRoute:
        """Least outstanding requests among the replicas that can serve the request (see
        `ReplicaRoute.can_serve`); ties broken round-robin so load spreads when idle.

        A replica whose container is down (restarting, or on a lost node) is passed over, so
        its requests go to the others at once; only when no replica can serve is one picked
        anyway, and the caller gets that replica's 503 with the reason. `avoid` is a replica
        that just refused a connection: another one is preferred.
        """
        replicas = self.replicas
        count = len(replicas)
        if count == 1:
            return replicas[0]
        if self.random:
            able = [r for r in replicas if r is not avoid and r.can_serve(hostname)]
            if able:
                return random.choice(able)
        start = self._next
        self._next = (start + 1) % count
        best: ReplicaRoute | None = None
        for offset in range(count):
            candidate = replicas[(start + offset) % count]
            if candidate is avoid or not candidate.can_serve(hostname):
                continue
            if best is None or candidate.outstanding < best.outstanding:
                best = candidate
        if best is None:
            return avoid if avoid is not None else replicas[start]
        return best


def variant_over(variant: VariantRoute, replicas: tuple[ReplicaRoute, ...]) -> VariantRoute:
    """`variant` served by other replicas (a rolling update's two fleets as one, withdrawn
    instances left out): the same name, weight, mode, strategy and shadow flag, a turn of its
    own."""
    return VariantRoute(
        variant.name,
        variant.weight,
        variant.mode,
        replicas,
        random=variant.random,
        shadow=variant.shadow,
    )


@dataclass(slots=True)
class EndpointRoute:
    name: str
    variants: tuple[VariantRoute, ...]
    # An endpoint with AsyncInferenceConfig: only the queue (`asyncinf/`) invokes it.
    async_inference: AsyncInferenceSpec | None = None
    # An endpoint that hosts inference components: its own variants run nothing, and each
    # request names a component, whose route is published under `component_key`.
    for_components: bool = False
    # An inference component's route: the endpoint it belongs to, and the component's name.
    component_of: str | None = None
    component_name: str | None = None
    # Invocations that found the component with no copy (NoCapacityInvocationFailures).
    no_capacity_failures: int = field(default=0, init=False)
    # The variants a request may be routed to (TargetVariant, weights): all but the shadows.
    by_name: dict[str, VariantRoute] = field(init=False)
    production: tuple[VariantRoute, ...] = field(init=False)
    shadows: tuple[VariantRoute, ...] = field(init=False)
    _cumulative: list[float] = field(init=False)
    # Some container is a MultiModel one: invocations take `router.multi_model`'s way.
    multi_model: bool = field(init=False)
    # Not for `Router.begin`'s fast lane: multi-model, or async-only (refused there by `invoke`).
    coroutine_only: bool = field(init=False)

    def __post_init__(self) -> None:
        self.production = tuple(v for v in self.variants if not v.shadow)
        self.shadows = tuple(v for v in self.variants if v.shadow)
        self.by_name = {v.name: v for v in self.production}
        self.multi_model = any(
            c.multi_model is not None
            for v in self.variants
            for r in v.replicas
            for c in r.containers
        )
        self.coroutine_only = self.multi_model or self.async_inference is not None
        total = 0.0
        self._cumulative = []
        for variant in self.production:
            total += max(variant.weight, 0.0)
            self._cumulative.append(total)

    def with_variants(self, variants: tuple[VariantRoute, ...]) -> EndpointRoute:
        """This endpoint's route over other variants (`variant_over`), its counters fresh."""
        return EndpointRoute(
            self.name,
            variants,
            self.async_inference,
            for_components=self.for_components,
            component_of=self.component_of,
            component_name=self.component_name,
        )

    def pick_variant(self) -> VariantRoute:
        """A production variant at random in proportion to its weight (all weights 0:
        uniformly)."""
        variants = self.production
        if len(variants) == 1:
            return variants[0]
        total = self._cumulative[-1]
        if total <= 0:
            return random.choice(variants)
        index = bisect.bisect_right(self._cumulative, random.random() * total)
        return variants[min(index, len(variants) - 1)]
