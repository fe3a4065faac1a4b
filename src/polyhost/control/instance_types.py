"""What one instance of a SageMaker instance type holds: its vCPUs and memory.

Inference components are placed on an endpoint's instances by what they require
(`placement.py`), so each instance needs a capacity. polyhost's instances are slices of one
machine (or of a Ray cluster), so the capacity is the type's as AWS publishes it, which keeps
a placement the same here as on SageMaker: a component that fits on an ml.m5.large there fits
here. `--instance-type TYPE=VCPUS:MIB` overrides or adds a type (docs/inference-components.md).

The table is the rule AWS's families follow, not a list of every type: the size gives the
vCPUs (large 2, xlarge 4, Nxlarge 4N, medium 1), the family the memory per vCPU (c 2 GiB, m and
the general-purpose g 4 GiB, r 8 GiB). The few families that break the rule are listed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from polyhost.errors import ValidationException


@dataclass(frozen=True)
class Capacity:
    cpus: float
    memory_mb: int


# Memory (MiB) per vCPU by the family's first letter.
_MIB_PER_VCPU = {"c": 2048, "m": 4096, "r": 8192, "g": 4096}
# Types whose memory does not follow the family rule (AWS's published figures).
_EXCEPTIONS: dict[str, Capacity] = {
    "ml.t2.medium": Capacity(2, 4096),
    "ml.t2.large": Capacity(2, 8192),
    "ml.t2.xlarge": Capacity(4, 16384),
    "ml.t2.2xlarge": Capacity(8, 32768),
    "ml.c4.large": Capacity(2, 3840),
    "ml.c4.xlarge": Capacity(4, 7680),
    "ml.c4.2xlarge": Capacity(8, 15360),
    "ml.c4.4xlarge": Capacity(16, 30720),
    "ml.c4.8xlarge": Capacity(36, 61440),
    "ml.m4.10xlarge": Capacity(40, 163840),
    "ml.c5.9xlarge": Capacity(36, 73728),
    "ml.c5.18xlarge": Capacity(72, 147456),
}
_TYPE = re.compile(r"ml\.([a-z]+)(\d+)([a-z-]*)\.(medium|large|xlarge|(\d+)xlarge)")
_OVERRIDE = re.compile(r"(ml\.[a-z0-9.-]+)=(\d+(?:\.\d+)?):(\d+)")


def _by_rule(instance_type: str) -> Capacity | None:
    match = _TYPE.fullmatch(instance_type)
    if match is None:
        return None
    family, size, multiple = match.group(1), match.group(4), match.group(5)
    per_vcpu = _MIB_PER_VCPU.get(family[0])
    if per_vcpu is None:
        return None
    if size == "medium":
        vcpus = 1
    elif size == "large":
        vcpus = 2
    elif size == "xlarge":
        vcpus = 4
    else:
        vcpus = 4 * int(multiple)
    return Capacity(vcpus, vcpus * per_vcpu)


class InstanceTypes:
    """The capacities of instance types: the built-in rule, then the server's overrides."""

    def __init__(self, overrides: Iterable[str] = ()) -> None:
        self._overrides: dict[str, Capacity] = {}
        for entry in overrides:
            match = _OVERRIDE.fullmatch(entry.strip())
            if match is None:
                raise ValueError(
                    f"--instance-type {entry!r}: expected TYPE=VCPUS:MEMORY_MIB, "
                    "e.g. ml.m5.large=2:8192"
                )
            self._overrides[match.group(1)] = Capacity(float(match.group(2)), int(match.group(3)))

    def capacity(self, instance_type: str | None) -> Capacity:
        """The capacity of one instance; a ValidationException names a type with none known."""
        if instance_type is None:
            raise ValidationException(
                "A variant for inference components needs an InstanceType: its capacity is "
                "what components are placed by."
            )
        found = (
            self._overrides.get(instance_type)
            or _EXCEPTIONS.get(instance_type)
            or _by_rule(instance_type)
        )
        if found is None:
            raise ValidationException(
                f"polyhost does not know the capacity of instance type {instance_type}; give "
                f"it with --instance-type {instance_type}=VCPUS:MEMORY_MIB."
            )
        return found
