"""Which instance a multi-model call goes to (`router.multi_model.model_replica`), in process.

The routes are the router's own; each instance's MultiModel container is a real
`MultiModelContainer` whose loaded table the test fills, as loads fill it. Nothing is fetched or
called: the decision under test is the placement. A model goes where it is loaded, a model
loaded nowhere always goes to the same instance, a hot model spreads once its holders are busy,
and an instance that cannot serve is passed over."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from polyhost.router.multi_model import (
    SPREAD_AT,
    MultiModelContainer,
    MultiModelLimits,
    _Model,
    model_replica,
)
from polyhost.router.table import ContainerRoute, ReplicaRoute, VariantRoute
from tests.support.fake_pool import FakePool


class _NoFetch:
    async def fetch(self, url: str, timeout_s: float) -> Path:
        raise AssertionError("placement fetches nothing")


def _multi(hostname: str) -> MultiModelContainer:
    return MultiModelContainer(
        hostname=hostname,
        prefix="s3://bucket/models/",
        cache=True,
        fetcher=_NoFetch(),
        limits=MultiModelLimits(),
        address=("127.0.0.1", 1),
    )


def _variant(instances: int, mode: str = "Direct", pipeline: bool = False) -> VariantRoute:
    replicas = []
    for index in range(instances):
        containers: list[ContainerRoute] = []
        if pipeline:
            containers.append(ContainerRoute("pre", FakePool("pre"), f"v/i-{index}/pre"))
        containers.append(
            ContainerRoute("mm", FakePool("mm"), f"v/i-{index}/mm", multi_model=_multi("mm"))
        )
        replicas.append(ReplicaRoute.of(f"i-{index}", tuple(containers)))
    return VariantRoute(
        "AllTraffic", 1.0, "Direct" if mode == "Direct" else "Serial", tuple(replicas)
    )


def _holder(replica: ReplicaRoute) -> MultiModelContainer:
    multi = replica.by_hostname["mm"].multi_model
    assert multi is not None
    return multi


def _load(replica: ReplicaRoute, target: str) -> None:
    _holder(replica).loaded[target] = _Model()


def test_a_model_loaded_nowhere_always_goes_to_the_same_instance() -> None:
    variant = _variant(4)
    for index in range(50):
        target = f"team/m{index}.tar.gz"
        first = model_replica(variant, "mm", target)
        # Other calls in between (round-robin turns, other models) do not move it.
        for other in range(5):
            model_replica(variant, "mm", f"other/{other}")
            variant.pick_replica("mm")
        assert model_replica(variant, "mm", target) is first


def test_models_loaded_nowhere_spread_over_the_instances() -> None:
    variant = _variant(4)
    chosen = Counter(model_replica(variant, "mm", f"m{i}").instance_id for i in range(400))
    assert set(chosen) == {"i-0", "i-1", "i-2", "i-3"}
    assert min(chosen.values()) > 60, chosen  # 100 each on average; hashing, not luck


def test_a_model_goes_to_the_instance_that_holds_it() -> None:
    variant = _variant(3)
    target = "m.tar.gz"
    holder = variant.replicas[2]
    _load(holder, target)
    for _ in range(10):
        assert model_replica(variant, "mm", target) is holder


def test_a_model_being_loaded_counts_as_held() -> None:
    variant = _variant(3)
    holder = variant.replicas[1]
    _holder(holder)._loads["m.tar.gz"] = None  # type: ignore[assignment]  # a load in flight
    assert model_replica(variant, "mm", "m.tar.gz") is holder


def test_the_least_busy_holder_wins() -> None:
    variant = _variant(3)
    for replica in variant.replicas:
        _load(replica, "m.tar.gz")
    variant.replicas[0].outstanding = 3
    variant.replicas[1].outstanding = 1
    variant.replicas[2].outstanding = 2
    assert model_replica(variant, "mm", "m.tar.gz") is variant.replicas[1]


def test_a_hot_model_spreads_once_its_holder_is_busy() -> None:
    variant = _variant(3)
    holder = variant.replicas[0]
    _load(holder, "hot.tar.gz")
    holder.outstanding = SPREAD_AT - 1
    assert model_replica(variant, "mm", "hot.tar.gz") is holder  # not busy enough yet
    holder.outstanding = SPREAD_AT
    spread = model_replica(variant, "mm", "hot.tar.gz")
    assert spread is not holder
    # The next instance is the model's own choice: the same every time.
    assert all(model_replica(variant, "mm", "hot.tar.gz") is spread for _ in range(5))
    _load(spread, "hot.tar.gz")  # loaded there now: the least busy holder takes the calls
    assert model_replica(variant, "mm", "hot.tar.gz") is spread


def test_no_spread_when_the_other_instances_are_as_busy() -> None:
    variant = _variant(2)
    holder, other = variant.replicas
    _load(holder, "m.tar.gz")
    holder.outstanding = SPREAD_AT + 2
    other.outstanding = SPREAD_AT + 2
    assert model_replica(variant, "mm", "m.tar.gz") is holder


def test_an_instance_that_cannot_serve_is_passed_over() -> None:
    variant = _variant(2)
    holder, other = variant.replicas
    _load(holder, "m.tar.gz")
    down = holder.by_hostname["mm"]
    down.available = False
    down.unavailable_reason = "restarting"
    assert model_replica(variant, "mm", "m.tar.gz") is other


def test_a_pipelines_model_container_decides_in_serial_mode() -> None:
    variant = _variant(3, mode="Serial", pipeline=True)
    holder = variant.replicas[1]
    _load(holder, "m.tar.gz")
    assert all(model_replica(variant, None, "m.tar.gz") is holder for _ in range(5))


def test_a_call_for_a_single_model_container_takes_turns_as_usual() -> None:
    variant = _variant(2)
    for replica in variant.replicas:
        replica.by_hostname["plain"] = ContainerRoute("plain", FakePool("plain"), "v/i/plain")
    seen = {model_replica(variant, "plain", "m.tar.gz").instance_id for _ in range(4)}
    assert seen == {"i-0", "i-1"}
