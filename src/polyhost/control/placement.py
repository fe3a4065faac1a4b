"""Where an endpoint's inference component copies run: a scheduler over its instances.

Each instance of a variant for components has its type's vCPUs and memory
(`instance_types.py`). Every copy of a component reserves the component's
NumberOfCpuCoresRequired and MinMemoryRequiredInMb on one instance, as on SageMaker. The
scheduler is a pure function of the endpoint's components (in creation order) and where their
copies run now, so the control plane can run it under its lock on every change and store the
answer:

- copies that run stay where they are (a change to one component never moves another's);
- a new copy goes to the instance with room that holds the fewest copies of its component
  (one per instance first), then the one with most memory free, then the lowest number;
- with ManagedInstanceScaling enabled, an instance is added (up to MaxInstanceCount) when a
  copy fits nowhere, and instances left empty at the end are removed down to
  MinInstanceCount;
- a copy that fits nowhere is left out, and its component gets a reason naming what is
  missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from polyhost.control.instance_types import Capacity

EPSILON = 1e-9


@dataclass(frozen=True)
class Fleet:
    """The instances of one variant for components."""

    capacity: Capacity
    instances: int  # how many run now (InitialInstanceCount at first)
    managed: bool = False  # ManagedInstanceScaling Status ENABLED
    min_instances: int = 0
    max_instances: int = 0


@dataclass(frozen=True)
class Demand:
    """One component: what each copy reserves, how many copies it wants, where they run."""

    name: str
    cpus: float
    memory_mb: int
    copies: int
    current: tuple[int, ...] = ()  # the instance of each copy running now


@dataclass
class Placement:
    instances: int
    copies: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # Components left short of their copies, and why.
    short: dict[str, str] = field(default_factory=dict)


@dataclass
class _Instance:
    cpus: float
    memory_mb: int
    copies: dict[str, int] = field(default_factory=dict)

    def fits(self, demand: Demand) -> bool:
        return self.cpus + EPSILON >= demand.cpus and self.memory_mb >= demand.memory_mb

    def take(self, demand: Demand) -> None:
        self.cpus -= demand.cpus
        self.memory_mb -= demand.memory_mb
        self.copies[demand.name] = self.copies.get(demand.name, 0) + 1

    @property
    def empty(self) -> bool:
        return not any(self.copies.values())


def place(fleet: Fleet, demands: list[Demand]) -> Placement:
    """Where every copy of `demands` runs (see the module's docstring)."""
    capacity = fleet.capacity
    instances = [_Instance(capacity.cpus, capacity.memory_mb) for _ in range(fleet.instances)]
    placed: dict[str, list[int]] = {}
    # Copies that run keep their instance, up to the count now wanted.
    for demand in demands:
        kept: list[int] = []
        for where in demand.current[: demand.copies]:
            if 0 <= where < len(instances) and instances[where].fits(demand):
                instances[where].take(demand)
                kept.append(where)
        placed[demand.name] = kept
    short: dict[str, str] = {}
    for demand in demands:
        kept = placed[demand.name]
        while len(kept) < demand.copies:
            index: int | None = _best(instances, demand)
            if index is None and fleet.managed and len(instances) < fleet.max_instances:
                instances.append(_Instance(capacity.cpus, capacity.memory_mb))
                index = len(instances) - 1 if instances[-1].fits(demand) else None
            if index is None:
                short[demand.name] = _shortage(fleet, demand, len(kept), len(instances))
                break
            instances[index].take(demand)
            kept.append(index)
    if fleet.managed:
        while len(instances) > fleet.min_instances and instances and instances[-1].empty:
            instances.pop()
    return Placement(
        instances=len(instances),
        copies={name: tuple(indexes) for name, indexes in placed.items()},
        short=short,
    )


def _best(instances: list[_Instance], demand: Demand) -> int | None:
    best: int | None = None
    best_key: tuple[int, int, int] | None = None
    for index, instance in enumerate(instances):
        if not instance.fits(demand):
            continue
        key = (instance.copies.get(demand.name, 0), -instance.memory_mb, index)
        if best_key is None or key < best_key:
            best, best_key = index, key
    return best


def _shortage(fleet: Fleet, demand: Demand, placed: int, instances: int) -> str:
    capacity = fleet.capacity
    wanted = f"{demand.copies} cop{'y' if demand.copies == 1 else 'ies'}"
    need = f"{demand.cpus:g} vCPUs and {demand.memory_mb} MiB"
    if demand.cpus > capacity.cpus + EPSILON or demand.memory_mb > capacity.memory_mb:
        return (
            f"A copy of inference component {demand.name} needs {need}, more than one "
            f"instance has ({capacity.cpus:g} vCPUs, {capacity.memory_mb} MiB): choose a "
            "larger InstanceType or lower ComputeResourceRequirements."
        )
    more = (
        f"MaxInstanceCount ({fleet.max_instances}) is reached"
        if fleet.managed
        else "enable ManagedInstanceScaling or add instances"
    )
    return (
        f"Only {placed} of {wanted} of inference component {demand.name} could be placed: no "
        f"instance of the {instances} has {need} free, and {more}. Lower the copy count or "
        "free capacity by removing copies of other components."
    )
