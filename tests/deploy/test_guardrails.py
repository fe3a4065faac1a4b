"""Deployment guardrails (UpdateEndpoint's DeploymentConfig.BlueGreenUpdatePolicy) on a real
server, with boto3 and the echo container: the old fleet answers "blue:", the new "green:".

A canary takes a share of traffic beside the old fleet for its bake, then all of it; a linear
shift adds the new fleet in steps; an alarm put into ALARM (SetAlarmState) during the bake rolls
the update back with no failed request, RollingBack then InService on the old config with a
reason naming the alarm; bad policies are refused with SageMaker's ValidationException."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import create_config, create_model, echo_container, wait_status
from tests.support.server import PolyhostProcess, ServerFactory

ROLE_WAIT_S = 60.0


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    # Alarms move only by SetAlarmState here: no evaluation undoes the state a test sets.
    return start_server("--alarm-evaluation-interval", "600")


_counter = iter(range(1_000_000))


def _unique(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}-{int(time.time() * 1000) % 100_000}"


def _fleet(sagemaker: Any, color: str, instances: int) -> str:
    """A model answering `<color>:` and a config of one AllTraffic variant of it."""
    name = _unique(color)
    create_model(sagemaker, name, [echo_container(None, ECHO_NAME=color)])
    create_config(sagemaker, name, [("AllTraffic", name, instances, 1.0)])
    return name


def _serving(sagemaker: Any, instances: int) -> tuple[str, str]:
    """An InService endpoint on a blue config; (endpoint name, config name)."""
    config = _fleet(sagemaker, "blue", instances)
    endpoint = _unique("guarded")
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=config)
    assert wait_status(sagemaker, endpoint)["EndpointStatus"] == "InService"
    return endpoint, config


def _answer(runtime: Any, endpoint: str, attributes: str | None = None) -> str:
    kwargs: dict[str, Any] = {"EndpointName": endpoint, "Body": b"x"}
    if attributes:
        kwargs["CustomAttributes"] = attributes
    return str(runtime.invoke_endpoint(**kwargs)["Body"].read().decode())


def _blue_green(traffic: dict[str, Any], **policy: Any) -> dict[str, Any]:
    return {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": traffic, **policy}}


def _until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _status(sagemaker: Any, endpoint: str) -> str:
    return str(sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointStatus"])


def _alarm(server: PolyhostProcess) -> str:
    name = _unique("deploy-errors")
    server.cloudwatch().put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=[{"Name": "EndpointName", "Value": "nothing"}],
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        TreatMissingData="notBreaching",
    )
    return name


class Load:
    """Invocations in a loop on a few threads, every answer and error kept."""

    def __init__(self, runtime: Any, endpoint: str, threads: int = 3, attrs: str = "") -> None:
        self.answers: list[str] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(runtime, endpoint, attrs), daemon=True)
            for _ in range(threads)
        ]

    def _run(self, runtime: Any, endpoint: str, attrs: str) -> None:
        while not self._stop.is_set():
            try:
                self.answers.append(_answer(runtime, endpoint, attrs or None))
            except Exception as error:  # every failure counts
                self.errors.append(repr(error))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)


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


def test_canary_shifts_a_share_then_all_traffic(sagemaker: Any, runtime: Any) -> None:
    endpoint, _ = _serving(sagemaker, instances=2)
    green = _fleet(sagemaker, "green", instances=2)
    policy = _blue_green(
        {
            "Type": "CANARY",
            "WaitIntervalInSeconds": 3,
            "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1},
        },
        TerminationWaitInSeconds=1,
    )
    sagemaker.update_endpoint(
        EndpointName=endpoint, EndpointConfigName=green, DeploymentConfig=policy
    )
    seen: list[tuple[str, str]] = []  # (endpoint status before the call, answer's fleet)
    while True:
        status = _status(sagemaker, endpoint)
        if status != "Updating":
            break
        seen.append((status, _answer(runtime, endpoint).split(":")[0]))
    assert status == "InService"
    fleets = [fleet for _, fleet in seen]
    assert "green" in fleets, "the canary never took traffic"
    first_green = fleets.index("green")
    # One request at a time: a blue answer after the first green one is the canary sharing
    # traffic with the old fleet (an all-at-once switch would answer green only from then on).
    during = fleets[first_green:]
    assert "blue" in during, f"no shared bake: {fleets}"
    # By capacity: one canary instance beside two old ones takes about a third, never all.
    assert during.count("blue") >= during.count("green") / 2
    after = {_answer(runtime, endpoint).split(":")[0] for _ in range(20)}
    assert after == {"green"}
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointConfigName"] == green
    assert "FailureReason" not in described
    assert described["LastDeploymentConfig"] == policy
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 2
    sagemaker.delete_endpoint(EndpointName=endpoint)


def test_linear_shifts_in_steps(sagemaker: Any, runtime: Any) -> None:
    endpoint, _ = _serving(sagemaker, instances=1)
    green = _fleet(sagemaker, "green", instances=3)
    sagemaker.update_endpoint(
        EndpointName=endpoint,
        EndpointConfigName=green,
        DeploymentConfig=_blue_green(
            {
                "Type": "LINEAR",
                "WaitIntervalInSeconds": 1,
                "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 34},
            }
        ),
    )
    # whoami answers "<fleet>@<port>": the new fleet's instances told apart.
    greens: set[str] = set()
    blues_with: dict[int, int] = {}  # new instances seen so far -> old-fleet answers then
    while _status(sagemaker, endpoint) == "Updating":
        fleet, port = _answer(runtime, endpoint, "whoami=1").split("@")
        if fleet == "green":
            greens.add(port)
        else:
            blues_with[len(greens)] = blues_with.get(len(greens), 0) + 1
    # Steps of one instance (34% of 3): the old fleet kept answering beside one new instance,
    # then beside two; never beside all three (the last step is the whole shift).
    assert blues_with.get(1, 0) > 0 and blues_with.get(2, 0) > 0, blues_with
    assert len(greens) == 2 and 3 not in blues_with
    described = wait_status(sagemaker, endpoint)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", green)
    after = [_answer(runtime, endpoint, "whoami=1").split("@") for _ in range(12)]
    assert {fleet for fleet, _ in after} == {"green"}
    assert len({port for _, port in after}) == 3
    sagemaker.delete_endpoint(EndpointName=endpoint)


def test_an_alarm_rolls_a_canary_back_without_failed_requests(
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
            **_blue_green(
                {
                    "Type": "CANARY",
                    "WaitIntervalInSeconds": 60,
                    "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 50},
                }
            ),
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]},
        },
    )
    _until(lambda: any(a.startswith("green:") for a in running.answers), "the canary's answers")
    server.cloudwatch().set_alarm_state(
        AlarmName=alarm, StateValue="ALARM", StateReason="Threshold Crossed: test"
    )
    statuses: set[str] = set()

    def settled() -> bool:
        statuses.add(_status(sagemaker, endpoint))
        return "InService" in statuses

    _until(settled, "the rollback", timeout=30)
    count = len(running.answers)
    _until(lambda: len(running.answers) > count + 30, "load after the rollback")
    running.__exit__()
    assert running.errors == []
    assert set(running.answers[count + 6 :]) == {"blue:x"}  # past what was in flight
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointStatus"] == "InService"
    assert described["EndpointConfigName"] == blue
    assert alarm in described["FailureReason"] and "rolled back" in described["FailureReason"]
    assert "Updating" in statuses or "RollingBack" in statuses
    sagemaker.delete_endpoint(EndpointName=endpoint)


def test_rolling_back_lets_requests_on_the_new_fleet_finish(
    server: PolyhostProcess, sagemaker: Any, runtime: Any, tmp_path: Path
) -> None:
    endpoint, blue = _serving(sagemaker, instances=1)
    green = _fleet(sagemaker, "green", instances=1)
    alarm = _alarm(server)
    sagemaker.update_endpoint(
        EndpointName=endpoint,
        EndpointConfigName=green,
        DeploymentConfig={
            **_blue_green({"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 30}),
            "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm}]},
        },
    )
    _until(lambda: _answer(runtime, endpoint).startswith("green:"), "the shift to the new fleet")
    arrived, hold = tmp_path / "arrived", tmp_path / "release"
    arrived.mkdir()
    held: list[str] = []
    caller = threading.Thread(
        target=lambda: held.append(_answer(runtime, endpoint, f"arrived={arrived},hold={hold}")),
        daemon=True,
    )
    caller.start()
    _until(lambda: any(arrived.iterdir()), "the held request on the new fleet")
    server.cloudwatch().set_alarm_state(
        AlarmName=alarm, StateValue="ALARM", StateReason="Threshold Crossed: test"
    )
    # The new fleet drains: the endpoint is RollingBack, and new requests go to the old fleet.
    _until(lambda: _status(sagemaker, endpoint) == "RollingBack", "RollingBack")
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    assert alarm in described["FailureReason"]
    assert _answer(runtime, endpoint).startswith("blue:")
    hold.touch()
    caller.join(timeout=30)
    assert held == ["green:x"]
    described = wait_status(sagemaker, endpoint)
    _until(lambda: _status(sagemaker, endpoint) == "InService", "InService")
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    assert described["EndpointConfigName"] == blue
    assert described["FailureReason"].startswith(f"Update to endpoint config {green} failed")
    assert alarm in described["FailureReason"]
    sagemaker.delete_endpoint(EndpointName=endpoint)


def _refused(sagemaker: Any, endpoint: str, config: str, deployment: dict[str, Any]) -> str:
    with pytest.raises(ClientError) as raised:
        sagemaker.update_endpoint(
            EndpointName=endpoint, EndpointConfigName=config, DeploymentConfig=deployment
        )
    error = raised.value.response
    assert error["Error"]["Code"] == "ValidationException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(error["Error"]["Message"])


def test_bad_policies_are_refused(sagemaker: Any) -> None:
    endpoint, blue = _serving(sagemaker, instances=1)
    green = _fleet(sagemaker, "green", instances=2)
    canary = {"Type": "CANARY", "WaitIntervalInSeconds": 1}
    cases: list[tuple[dict[str, Any], str]] = [
        (_blue_green(canary), "CanarySize is required when Type is CANARY"),
        (
            _blue_green({"Type": "LINEAR", "WaitIntervalInSeconds": 1}),
            "LinearStepSize is required when Type is LINEAR",
        ),
        (
            _blue_green({**canary, "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 2}}),
            "CanarySize.Value (2, INSTANCE_COUNT) is more than 50% of variant AllTraffic's 2",
        ),
        (
            _blue_green({**canary, "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 80}}),
            "CanarySize.Value (80, CAPACITY_PERCENT) must be at most 50",
        ),
        (
            _blue_green(
                {
                    "Type": "ALL_AT_ONCE",
                    "WaitIntervalInSeconds": 1,
                    "LinearStepSize": {"Type": "INSTANCE_COUNT", "Value": 1},
                }
            ),
            "LinearStepSize is only for Type LINEAR",
        ),
        (
            _blue_green(
                {**canary, "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1}},
                TerminationWaitInSeconds=3600,
                MaximumExecutionTimeoutInSeconds=600,
            ),
            "MaximumExecutionTimeoutInSeconds (600) must be larger than the deployment's waits",
        ),
        (
            {
                **_blue_green({"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0}),
                "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "no-such-alarm"}]},
            },
            "AutoRollbackConfiguration.Alarms names alarms that do not exist: no-such-alarm",
        ),
        (
            {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "x"}]}},
            "DeploymentConfig needs a BlueGreenUpdatePolicy",
        ),
    ]
    for deployment, message in cases:
        assert message in _refused(sagemaker, endpoint, green, deployment), deployment
    # botocore's own bounds, from the model, in SageMaker's words.
    message = _refused(
        sagemaker,
        endpoint,
        green,
        _blue_green({"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 4000}),
    )
    assert "trafficRoutingConfiguration.waitIntervalInSeconds" in message
    assert "less than or equal to 3600" in message
    # The variants of a canary's new config must be those serving.
    other = _unique("other")
    create_model(sagemaker, other, [echo_container(None, ECHO_NAME="other")])
    create_config(sagemaker, other, [("Other", other, 2, 1.0)])
    message = _refused(
        sagemaker,
        endpoint,
        other,
        _blue_green({**canary, "CanarySize": {"Type": "INSTANCE_COUNT", "Value": 1}}),
    )
    assert "variants (Other) are not those serving (AllTraffic)" in message
    described = sagemaker.describe_endpoint(EndpointName=endpoint)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", blue)
    sagemaker.delete_endpoint(EndpointName=endpoint)
