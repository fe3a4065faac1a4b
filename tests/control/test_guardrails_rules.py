"""`control.guardrails.deployment_guardrails`: UpdateEndpoint's DeploymentConfig checked
against the endpoint and turned into the plan the deployer runs. The rules a running server
shows over boto3 are in tests/deploy/test_guardrails.py and test_rolling_endpoint.py; here,
those a real server is slow to reach (serverless and shadow variants, large fleets) and the
plan's values."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from polyhost.control.guardrails import deployment_guardrails
from polyhost.control.seam import (
    BlueGreenUpdate,
    EndpointSpec,
    RollingUpdate,
    ServerlessSpec,
)
from polyhost.control.specs import spec_from_json, spec_to_json
from polyhost.errors import ValidationException
from tests.support.fake_backend import container, endpoint, variant

ALARMS = {"errors": "OK"}


def _plan(deployment: dict[str, Any], new: EndpointSpec, serving: EndpointSpec) -> Any:
    return deployment_guardrails(deployment, new=new, serving=serving, alarm_state=ALARMS.get)


def _refusal(deployment: dict[str, Any], new: EndpointSpec, serving: EndpointSpec) -> str:
    with pytest.raises(ValidationException) as raised:
        _plan(deployment, new, serving)
    return str(raised.value)


def _fleet(count: int, revision: int = 1, name: str = "AllTraffic") -> EndpointSpec:
    return endpoint(
        "ep", variant(container("c"), name=name, instance_count=count), revision=revision
    )


def _rolling(kind: str, value: int, **policy: Any) -> dict[str, Any]:
    return {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": kind, "Value": value},
            "WaitIntervalInSeconds": 30,
            **policy,
        }
    }


def test_a_rolling_policy_becomes_the_plan() -> None:
    deployment = {
        **_rolling(
            "CAPACITY_PERCENT",
            25,
            MaximumExecutionTimeoutInSeconds=900,
            RollbackMaximumBatchSize={"Type": "INSTANCE_COUNT", "Value": 2},
        ),
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]},
    }
    plan = _plan(deployment, _fleet(8, revision=2), _fleet(6))
    assert plan == RollingUpdate(
        batch_type="CAPACITY_PERCENT",
        batch_value=25,
        wait_s=30.0,
        timeout_s=900.0,
        rollback_type="INSTANCE_COUNT",
        rollback_value=2,
        alarms=("errors",),
    )
    # 25% of the new fleet's 8 instances; the rollback's 2 of the old fleet's 6.
    assert (plan.batch(8), plan.rollback_batch(6)) == (2, 2)
    # Rounded up, and the whole old fleet at once without a RollbackMaximumBatchSize.
    unbounded = _plan(
        _rolling("CAPACITY_PERCENT", 34, MaximumExecutionTimeoutInSeconds=900),
        _fleet(3, 2),
        _fleet(3),
    )
    assert (unbounded.batch(3), unbounded.rollback_batch(3), unbounded.timeout_s) == (2, 3, 900.0)


def test_a_batch_is_five_to_fifty_percent_of_the_variant() -> None:
    # One instance of 40 is 2.5%.
    message = _refusal(_rolling("INSTANCE_COUNT", 1), _fleet(40, 2), _fleet(40))
    assert (
        "MaximumBatchSize.Value (1, INSTANCE_COUNT) is less than 5% of variant AllTraffic's "
        in message
    )
    assert "give at least 2." in message
    assert isinstance(
        _plan(_rolling("INSTANCE_COUNT", 2), _fleet(40, 2), _fleet(40)), RollingUpdate
    )
    assert isinstance(
        _plan(_rolling("INSTANCE_COUNT", 20), _fleet(40, 2), _fleet(40)), RollingUpdate
    )
    assert "give at most 20" in _refusal(_rolling("INSTANCE_COUNT", 21), _fleet(40, 2), _fleet(40))


def test_serverless_and_shadow_variants_are_not_rolled() -> None:
    serverless = replace(
        _fleet(1, 2),
        variants=(replace(_fleet(1).variants[0], serverless=ServerlessSpec(2048, 5)),),
    )
    message = _refusal(_rolling("INSTANCE_COUNT", 1), serverless, _fleet(2))
    assert (
        "Variant AllTraffic of the new endpoint configuration (ep-cfg-2) is serverless" in message
    )
    message = _refusal(_rolling("INSTANCE_COUNT", 1), _fleet(2, 2), serverless)
    assert "of the serving one (ep-cfg-2) is serverless" in message
    shadowed = endpoint(
        "ep",
        variant(container("c"), instance_count=2),
        replace(variant(container("s"), name="Shadow", instance_count=2), shadow=True),
        revision=2,
    )
    message = _refusal(_rolling("INSTANCE_COUNT", 1), shadowed, _fleet(2))
    assert "has 2 (AllTraffic, Shadow, shadow variants included)" in message


def test_one_policy_and_one_kind_of_endpoint() -> None:
    both = {
        **_rolling("INSTANCE_COUNT", 1),
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
        },
    }
    assert "takes one update policy" in _refusal(both, _fleet(2, 2), _fleet(2))
    alone = {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]}}
    assert "or a RollingUpdatePolicy" in _refusal(alone, _fleet(2, 2), _fleet(2))
    components = replace(_fleet(2, 2), for_components=True)
    assert "inference components" in _refusal(_rolling("INSTANCE_COUNT", 1), components, _fleet(2))
    # A blue/green policy still plans as before.
    canary = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 5,
                "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
            }
        }
    }
    plan = _plan(canary, _fleet(2, 2), _fleet(2))
    assert isinstance(plan, BlueGreenUpdate) and plan.steps == ((1,),)


def test_the_plan_is_stored_with_the_endpoint() -> None:
    """The spec (and its plan) survives the store's JSON, either kind of policy."""
    rolling = _plan(
        {
            **_rolling(
                "INSTANCE_COUNT", 1, RollbackMaximumBatchSize={"Type": "INSTANCE_COUNT", "Value": 1}
            ),
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]},
        },
        _fleet(2, 2),
        _fleet(2),
    )
    linear = _plan(
        {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "LINEAR",
                    "WaitIntervalInSeconds": 5,
                    "LinearStepSize": {"Type": "INSTANCE_COUNT", "Value": 1},
                }
            }
        },
        _fleet(4, 2),
        _fleet(4),
    )
    for plan in (rolling, linear):
        spec = replace(_fleet(2, 2), guardrails=plan)
        assert spec_from_json(spec_to_json(spec)) == spec
    assert replace(_fleet(2, 2), guardrails=rolling).rolling_update == rolling
    assert replace(_fleet(2, 2), guardrails=linear).blue_green == linear
