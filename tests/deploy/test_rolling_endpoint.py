"""UpdateEndpoint's DeploymentConfig.RollingUpdatePolicy on a real server, with boto3 and the
echo container: the old fleet answers "blue:", the new "green:".

The one variant's instances are replaced MaximumBatchSize at a time, both fleets answering in
between, with no failed request; an alarm put into ALARM (SetAlarmState) during a batch's bake
rolls the update back in batches of RollbackMaximumBatchSize, RollingBack then InService on the
old config with a FailureReason naming the alarm; SageMaker's rules for the policy are
enforced with a ValidationException saying what to fix."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.deploy.test_guardrails import (
    Load,
    _alarm,
    _answer,
    _fleet,
    _refused,
    _serving,
    _status,
    _unique,
    _until,
)
from tests.support.endpoints import create_config, create_model, echo_container, wait_status
from tests.support.server import PolyhostProcess, ServerFactory


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    # Alarms move only by SetAlarmState here: no evaluation undoes the state a test sets.
    return start_server("--alarm-evaluation-interval", "600")


@pytest.fixture
def load() -> Iterator[Callable[..., Load]]:
    started: list[Load] = []

    def make(*args: Any, **kwargs: Any) -> Load:
        running = Load(*args, **kwargs).__enter__()
        started.append(running)
        return running

    yield make
    for running in started:
        running.__exit__()


def _rolling(batch: dict[str, Any], wait_s: int, **policy: Any) -> dict[str, Any]:
    return {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": batch,
            "WaitIntervalInSeconds": wait_s,
            **policy,
        }
    }


ONE = {"Type": "INSTANCE_COUNT", "Value": 1}


def test_a_rolling_update_replaces_instances_in_batches(
    sagemaker: Any, runtime: Any, load: Callable[..., Load]
) -> None:
    endpoint, _ = _serving(sagemaker, instances=2)
    green = _fleet(sagemaker, "green", instances=2)
    running = load(runtime, endpoint, threads=2, attrs="sleep=0.02")
    _until(lambda: len(running.answers) > 5, "answers of the old fleet")
    deployment = _rolling(ONE, wait_s=2, MaximumExecutionTimeoutInSeconds=600)
    sagemaker.update_endpoint(
        EndpointName=endpoint, EndpointConfigName=green, DeploymentConfig=deployment
    )
    statuses: set[str] = set()

    def settled() -> bool:
        statuses.add(_status(sagemaker, endpoint))
        return statuses != {"Updating"} and "InService" in statuses

    _until(settled, "the end of the rolling update", timeout=90)
    count = len(running.answers)
    _until(lambda: len(running.answers) > count + 10, "load after the update")
    running.__exit__()
    assert running.errors == []
    fleets = [answer.split(":")[0] for answer in running.answers]
    first_green = fleets.index("green")
    # One instance at a time: the old fleet answered beside the first new instance.
    assert "blue" in fleets[first_green:], "every blue answer came before the first green one"
    assert set(fleets[-5:]) == {"green"}
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", green)
    assert "FailureReason" not in described
    assert described["LastDeploymentConfig"] == deployment
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    after = [_answer(runtime, endpoint, "whoami=1").split("@") for _ in range(12)]
    assert {fleet for fleet, _ in after} == {"green"}
    assert len({port for _, port in after}) == 2
    sagemaker.delete_endpoint(EndpointName=endpoint)


def test_an_alarm_rolls_a_rolling_update_back_in_batches(
    server: PolyhostProcess, sagemaker: Any, runtime: Any, load: Callable[..., Load]
) -> None:
    endpoint, blue = _serving(sagemaker, instances=2)
    green = _fleet(sagemaker, "green", instances=2)
    alarm = _alarm(server)
    running = load(runtime, endpoint, threads=3, attrs="sleep=0.05")
    sagemaker.update_endpoint(
        EndpointName=endpoint,
        EndpointConfigName=green,
        DeploymentConfig={
            **_rolling(ONE, wait_s=60, RollbackMaximumBatchSize=ONE),
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]},
        },
    )
    _until(lambda: any(a.startswith("green:") for a in running.answers), "the first batch")
    server.cloudwatch().set_alarm_state(
        AlarmName=alarm, StateValue="ALARM", StateReason="Threshold Crossed: test"
    )
    statuses: list[str] = []

    def settled() -> bool:
        statuses.append(_status(sagemaker, endpoint))
        return statuses[-1] == "InService"

    _until(settled, "the rollback", timeout=60)
    count = len(running.answers)
    _until(lambda: len(running.answers) > count + 30, "load after the rollback")
    running.__exit__()
    assert running.errors == []
    assert set(running.answers[count + 6 :]) == {"blue:x"}  # past what was in flight
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", blue)
    reason = described["FailureReason"]
    assert reason.startswith(f"Update to endpoint config {green} failed: rolled back: ")
    assert alarm in reason
    assert "RollingBack" in statuses or "Updating" in statuses
    after = [_answer(runtime, endpoint, "whoami=1").split("@") for _ in range(12)]
    assert {fleet for fleet, _ in after} == {"blue"}
    assert len({port for _, port in after}) == 2  # the old fleet whole again
    sagemaker.delete_endpoint(EndpointName=endpoint)


def test_bad_rolling_policies_are_refused(server: PolyhostProcess, sagemaker: Any) -> None:
    endpoint, blue = _serving(sagemaker, instances=2)
    green = _fleet(sagemaker, "green", instances=4)
    blue_green = {
        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}
    }
    alarm = _alarm(server)
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {**_rolling(ONE, wait_s=0), "BlueGreenUpdatePolicy": blue_green},
            "DeploymentConfig takes one update policy",
        ),
        (
            _rolling({"Type": "INSTANCE_COUNT", "Value": 3}, wait_s=0),
            "MaximumBatchSize.Value (3, INSTANCE_COUNT) is more than 50% of variant "
            "AllTraffic's 4 instances in the new endpoint configuration: give at most 2.",
        ),
        (
            _rolling({"Type": "CAPACITY_PERCENT", "Value": 60}, wait_s=0),
            "MaximumBatchSize.Value (60, CAPACITY_PERCENT) must be from 5 to 50",
        ),
        (
            _rolling({"Type": "CAPACITY_PERCENT", "Value": 4}, wait_s=0),
            "MaximumBatchSize.Value (4, CAPACITY_PERCENT) must be from 5 to 50",
        ),
        (
            _rolling(
                ONE, wait_s=0, RollbackMaximumBatchSize={"Type": "CAPACITY_PERCENT", "Value": 150}
            ),
            "RollbackMaximumBatchSize.Value (150, CAPACITY_PERCENT) must be at most 100",
        ),
        (
            _rolling(ONE, wait_s=3600, MaximumExecutionTimeoutInSeconds=7200),
            "MaximumExecutionTimeoutInSeconds (7200) must be larger than the update's waits: "
            "4 batch(es) each baked WaitIntervalInSeconds (3600) = 14400 s.",
        ),
        (
            {
                **_rolling(ONE, wait_s=0),
                "AutoRollbackConfiguration": {
                    "Alarms": [{"AlarmName": alarm}, {"AlarmName": "nope"}]
                },
            },
            "AutoRollbackConfiguration.Alarms names alarms that do not exist: nope.",
        ),
    ]
    for deployment, message in cases:
        assert message in _refused(sagemaker, endpoint, green, deployment), deployment
    # The model's own rules, in SageMaker's words.
    message = _refused(
        sagemaker, endpoint, green, _rolling({"Type": "COPY_COUNT", "Value": 1}, wait_s=0)
    )
    assert "rollingUpdatePolicy.maximumBatchSize.type" in message
    # A variant of one instance has no batch of 5% to 50% of it.
    single = _fleet(sagemaker, "single", instances=1)
    message = _refused(sagemaker, endpoint, single, _rolling(ONE, wait_s=0))
    assert "variant AllTraffic has 1 instance in the new endpoint configuration" in message
    assert "give it at least 2 instances, or use a BlueGreenUpdatePolicy" in message
    # One variant, of the serving variant's name.
    pair = _unique("pair")
    create_model(sagemaker, pair, [echo_container(None, ECHO_NAME="pair")])
    create_config(sagemaker, pair, [("AllTraffic", pair, 2, 1.0), ("Other", pair, 2, 1.0)])
    message = _refused(sagemaker, endpoint, pair, _rolling(ONE, wait_s=0))
    assert "has 2 (AllTraffic, Other, shadow variants included)" in message
    renamed = _unique("renamed")
    create_model(sagemaker, renamed, [echo_container(None, ECHO_NAME="renamed")])
    create_config(sagemaker, renamed, [("Renamed", renamed, 2, 1.0)])
    message = _refused(sagemaker, endpoint, renamed, _rolling(ONE, wait_s=0))
    assert "names its variant Renamed: give it the serving variant's name" in message
    described = wait_status(sagemaker, endpoint)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", blue)
    sagemaker.delete_endpoint(EndpointName=endpoint)


def test_retain_deployment_config_rolls_again(sagemaker: Any) -> None:
    """RetainDeploymentConfig takes the last RollingUpdatePolicy again (LastDeploymentConfig)."""
    endpoint, _ = _serving(sagemaker, instances=2)
    green = _fleet(sagemaker, "green", instances=2)
    deployment = _rolling(ONE, wait_s=0)
    sagemaker.update_endpoint(
        EndpointName=endpoint, EndpointConfigName=green, DeploymentConfig=deployment
    )
    assert wait_status(sagemaker, endpoint, timeout=90)["EndpointConfigName"] == green
    again = _fleet(sagemaker, "again", instances=2)
    sagemaker.update_endpoint(
        EndpointName=endpoint, EndpointConfigName=again, RetainDeploymentConfig=True
    )
    described = wait_status(sagemaker, endpoint, timeout=90)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", again)
    assert "FailureReason" not in described
    assert described["LastDeploymentConfig"] == deployment
    sagemaker.delete_endpoint(EndpointName=endpoint)
