"""What the metrics see of the running groups: one `ContainerSample` per routed container.

The deployer owns the groups, the routes and the backend handles; `metrics/` owns the series.
This module is the only place the two meet, so neither learns the other's types.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from polyhost.deploy.running import RunningGroup
from polyhost.metrics.collection import ContainerSample, ResourceUsage


def container_samples(groups: Iterable[RunningGroup]) -> Iterator[ContainerSample]:
    for group in groups:
        # An inference component's copies are counted on the endpoint that hosts them, each
        # under its component's name (the copies' hostname).
        component = group.spec.component
        endpoint_name = group.spec.endpoint_name if component is None else component.endpoint_name
        for running in group.containers:
            route = running.route
            if route is None:
                continue
            stats = running.handle.stats() if running.handle is not None else None
            yield ContainerSample(
                endpoint_name=endpoint_name,
                variant_name=running.variant.variant_name,
                instance_id=running.stream.instance_id,
                container_name=running.spec.hostname,
                counters=route.counters,
                up=route.available,
                restarts=running.restarts,
                usage=None
                if stats is None
                else ResourceUsage(stats.cpu_percent, stats.memory_percent, stats.rss_bytes),
                model_dir=running.launch.model_dir,
                entry=running.variant.mode == "Direct"
                or running.spec is running.variant.containers[0],
                setups=tuple(running.setups),
                node=running.node,
                inference_component=None if component is None else component.component_name,
                reserved_cpus=running.variant.cpus,
                reserved_memory_mb=running.variant.reserved_memory_mb,
                placed_on=_placed_on(running.variant.copy_instances, running.stream.instance_id),
            )


def _placed_on(copy_instances: tuple[int, ...], instance_id: str) -> int | None:
    """The endpoint instance copy `i-N` was placed on (None for an endpoint's own instance)."""
    index = int(instance_id[2:]) if instance_id[2:].isdigit() else -1
    return copy_instances[index] if 0 <= index < len(copy_instances) else None
