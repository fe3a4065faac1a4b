"""Instance types' capacities: the family rule, AWS's exceptions, and the server's overrides."""

from __future__ import annotations

import pytest

from polyhost.control.instance_types import Capacity, InstanceTypes
from polyhost.errors import ValidationException


@pytest.mark.parametrize(
    ("instance_type", "capacity"),
    [
        ("ml.m5.large", Capacity(2, 8192)),
        ("ml.m5.xlarge", Capacity(4, 16384)),
        ("ml.c5.2xlarge", Capacity(8, 16384)),
        ("ml.r6i.4xlarge", Capacity(16, 131072)),
        ("ml.t2.medium", Capacity(2, 4096)),
        ("ml.c5.9xlarge", Capacity(36, 73728)),
        ("ml.g5.xlarge", Capacity(4, 16384)),
    ],
)
def test_published_capacities(instance_type: str, capacity: Capacity) -> None:
    assert InstanceTypes().capacity(instance_type) == capacity


def test_an_override_wins_and_adds_types() -> None:
    types = InstanceTypes(["ml.m5.large=1:1024", "ml.inf2.xlarge=4:16384"])
    assert types.capacity("ml.m5.large") == Capacity(1, 1024)
    assert types.capacity("ml.inf2.xlarge") == Capacity(4, 16384)


def test_an_unknown_type_says_how_to_give_it() -> None:
    with pytest.raises(ValidationException) as raised:
        InstanceTypes().capacity("ml.inf2.xlarge")
    assert "--instance-type ml.inf2.xlarge=VCPUS:MEMORY_MIB" in raised.value.message


def test_a_malformed_override_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="expected TYPE=VCPUS:MEMORY_MIB"):
        InstanceTypes(["ml.m5.large=2"])
