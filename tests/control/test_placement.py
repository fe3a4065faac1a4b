"""The scheduler that places inference component copies on an endpoint's instances."""

from __future__ import annotations

from polyhost.control.instance_types import Capacity
from polyhost.control.placement import Demand, Fleet, place

LARGE = Capacity(cpus=2, memory_mb=8192)


def test_copies_spread_one_per_instance_first() -> None:
    placed = place(Fleet(LARGE, instances=3), [Demand("a", 0.5, 512, copies=4)])
    assert sorted(placed.copies["a"]) == [0, 0, 1, 2]
    assert placed.short == {}


def test_running_copies_stay_where_they_are() -> None:
    fleet = Fleet(LARGE, instances=2)
    first = place(fleet, [Demand("a", 1, 512, copies=1, current=(1,)), Demand("b", 1, 512, 2)])
    assert first.copies["a"] == (1,)
    # b spreads over both instances, around a.
    assert sorted(first.copies["b"]) == [0, 1]
    # Scaling a down keeps b where it runs.
    again = place(
        fleet,
        [Demand("a", 1, 512, 0, current=(1,)), Demand("b", 1, 512, 2, current=first.copies["b"])],
    )
    assert again.copies["b"] == first.copies["b"]
    assert again.copies["a"] == ()


def test_a_copy_that_fits_nowhere_is_left_out_with_a_reason() -> None:
    placed = place(Fleet(LARGE, instances=2), [Demand("a", 0.25, 6144, copies=3)])
    assert sorted(placed.copies["a"]) == [0, 1]
    assert "Only 2 of 3 copies" in placed.short["a"]
    assert "enable ManagedInstanceScaling" in placed.short["a"]


def test_a_copy_larger_than_an_instance_is_told_so() -> None:
    placed = place(Fleet(LARGE, instances=4), [Demand("a", 4, 512, copies=1)])
    assert placed.copies["a"] == ()
    assert "more than one instance has (2 vCPUs, 8192 MiB)" in placed.short["a"]


def test_cpu_and_memory_both_bound_an_instance() -> None:
    # 2 vCPUs: four copies of 0.5 fill one instance even though memory is left.
    placed = place(Fleet(LARGE, instances=1), [Demand("a", 0.5, 128, copies=5)])
    assert placed.copies["a"] == (0, 0, 0, 0)
    assert "Only 4 of 5" in placed.short["a"]


def test_managed_scaling_adds_instances_up_to_the_maximum() -> None:
    fleet = Fleet(LARGE, instances=1, managed=True, min_instances=1, max_instances=3)
    placed = place(fleet, [Demand("a", 1.5, 512, copies=4)])
    assert placed.instances == 3
    assert sorted(placed.copies["a"]) == [0, 1, 2]
    assert "MaxInstanceCount (3) is reached" in placed.short["a"]


def test_managed_scaling_removes_empty_instances_down_to_the_minimum() -> None:
    fleet = Fleet(LARGE, instances=3, managed=True, min_instances=1, max_instances=3)
    placed = place(fleet, [Demand("a", 1.5, 512, copies=1, current=(0, 1, 2))])
    assert placed.instances == 1
    assert placed.copies["a"] == (0,)
    none = place(fleet, [Demand("a", 1.5, 512, copies=0, current=(0,))])
    assert none.instances == 1


def test_components_are_served_in_creation_order() -> None:
    """The first component gets the room; the later one is short, not both half-served."""
    placed = place(
        Fleet(LARGE, instances=1), [Demand("first", 2, 512, 1), Demand("later", 2, 512, 1)]
    )
    assert placed.copies == {"first": (0,), "later": ()}
    assert set(placed.short) == {"later"}
