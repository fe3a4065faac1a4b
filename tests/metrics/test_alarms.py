"""Metric alarms over a real history and a real store: what each operation answers and
refuses, and how evaluation moves an alarm between states (M of N, TreatMissingData,
percentiles), with CloudWatch's reasons and history items.

Params are what the wire adapter hands over after checking botocore's model; the protocols and
the evaluator's loop are tested against a real server in tests/http/services/test_alarms.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from polyhost.errors import (
    InvalidNextToken,
    InvalidParameterCombination,
    InvalidParameterValue,
    MissingParameter,
    ServiceError,
)
from polyhost.metrics import catalog, sketch
from polyhost.metrics.alarm_actions import AUTOSCALING_PREFIX, AlarmEvent
from polyhost.metrics.alarm_store import AlarmStore
from polyhost.metrics.alarms import AlarmService, InvalidFormat, LimitExceeded, ResourceNotFound
from polyhost.metrics.cell import Cell
from polyhost.metrics.cloudwatch_api import CloudWatchApi
from polyhost.metrics.history import MetricsHistory
from polyhost.metrics.query import MetricId, dimensions

T0 = 1_700_000_400  # a multiple of 60
DIMS = [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "AllTraffic"}]
CALLS = MetricId(
    "AWS/SageMaker", "Invocations", dimensions(EndpointName="ep", VariantName="AllTraffic")
)
LATENCY = MetricId("AWS/SageMaker", "ModelLatency", CALLS.dimensions)
POLICY = (
    "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:0b1f6b3e-4d1c-4c1e-9d1e-"
    "1a2b3c4d5e6f:resource/sagemaker/endpoint/ep/variant/AllTraffic:policyName/up"
)


class Clock:
    def __init__(self) -> None:
        self.now = float(T0)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def history() -> MetricsHistory:
    return MetricsHistory(clock=lambda: T0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlarmStore]:
    store = AlarmStore.open(tmp_path)
    yield store
    store.close()


@pytest.fixture
def alarms(store: AlarmStore, history: MetricsHistory, clock: Clock) -> Iterator[AlarmService]:
    service = AlarmService(
        store, history, region="us-east-1", account_id="123456789012", clock=clock
    )
    yield service
    service.close()


def calls(history: MetricsHistory, at: float, count: int) -> None:
    """`count` invocations in the 10-second slot starting at `at`."""
    history.record(at, [(CALLS, catalog.INVOCATIONS, Cell.of_binary(count, count))])


def put(alarms: AlarmService, **params: Any) -> None:
    request: dict[str, Any] = {
        "AlarmName": "busy",
        "Namespace": "AWS/SageMaker",
        "MetricName": "Invocations",
        "Dimensions": DIMS,
        "Statistic": "Sum",
        "Period": 10,
        "EvaluationPeriods": 1,
        "Threshold": 5.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
    }
    request.update(params)
    alarms.call("PutMetricAlarm", {k: v for k, v in request.items() if v is not None})


def described(alarms: AlarmService, name: str = "busy") -> dict[str, Any]:
    found = alarms.call("DescribeAlarms", {"AlarmNames": [name]})["MetricAlarms"]
    assert len(found) == 1
    alarm: dict[str, Any] = found[0]
    return alarm


def state(alarms: AlarmService, name: str = "busy") -> str:
    value: str = described(alarms, name)["StateValue"]
    return value


def test_a_new_alarm_is_unchecked_then_judged_on_its_settled_periods(
    alarms: AlarmService, history: MetricsHistory, clock: Clock
) -> None:
    put(alarms, AlarmDescription="too busy")
    alarm = described(alarms)
    assert alarm["StateValue"] == "INSUFFICIENT_DATA"
    assert alarm["StateReason"] == "Unchecked: Initial alarm creation"
    assert alarm["AlarmArn"] == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:busy"
    assert alarm["AlarmDescription"] == "too busy" and alarm["ActionsEnabled"] is True

    calls(history, T0, 7)
    clock.now = T0 + 11  # the slot ended 1 s ago: not settled, not judged yet
    assert alarms.evaluate_all() == 0
    assert state(alarms) == "INSUFFICIENT_DATA"
    clock.now = T0 + 14
    assert alarms.evaluate_all() == 1
    alarm = described(alarms)
    assert alarm["StateValue"] == "ALARM"
    assert alarm["StateReason"] == (
        "Threshold Crossed: 1 datapoint [7.0 (14/11/23 22:20:00)] was greater than or equal to "
        "the threshold (5.0) (minimum 1 datapoint for OK -> ALARM transition)."
    )
    data = json.loads(alarm["StateReasonData"])
    assert data["statistic"] == "Sum" and data["period"] == 10 and data["threshold"] == 5.0
    assert data["recentDatapoints"] == [7.0]
    assert data["evaluatedDatapoints"] == [
        {"timestamp": "2023-11-14T22:20:00.000+0000", "sampleCount": 7.0, "value": 7.0}
    ]
    assert alarm["StateUpdatedTimestamp"] == T0 + 14

    calls(history, T0 + 10, 2)
    clock.now = T0 + 24
    assert alarms.evaluate_all() == 1
    assert state(alarms) == "OK"
    assert (
        "was not greater than or equal to the threshold (5.0)" in described(alarms)["StateReason"]
    )

    clock.now = T0 + 34  # no data at all in the range: `missing` makes INSUFFICIENT_DATA
    alarms.evaluate_all()
    assert described(alarms)["StateReason"] == "Insufficient Data: 1 datapoint was unknown."

    items = alarms.call("DescribeAlarmHistory", {"AlarmName": "busy"})["AlarmHistoryItems"]
    assert [i["HistorySummary"] for i in items] == [
        "Alarm updated from OK to INSUFFICIENT_DATA",
        "Alarm updated from ALARM to OK",
        "Alarm updated from INSUFFICIENT_DATA to ALARM",
        'Alarm "busy" created',
    ]
    update = json.loads(items[2]["HistoryData"])
    assert update["oldState"]["stateValue"] == "INSUFFICIENT_DATA"
    assert update["newState"]["stateValue"] == "ALARM"
    assert update["newState"]["stateReasonData"]["recentDatapoints"] == [7.0]
    oldest_first = alarms.call(
        "DescribeAlarmHistory",
        {"AlarmName": "busy", "HistoryItemType": "StateUpdate", "ScanBy": "TimestampAscending"},
    )["AlarmHistoryItems"]
    assert oldest_first[0]["HistorySummary"] == "Alarm updated from INSUFFICIENT_DATA to ALARM"
    assert len(oldest_first) == 3


def test_m_out_of_n_counts_breaching_datapoints_of_the_range(
    alarms: AlarmService, history: MetricsHistory, clock: Clock
) -> None:
    put(alarms, EvaluationPeriods=3, DatapointsToAlarm=2)
    for slot, count in enumerate((9, 1, 1)):
        calls(history, T0 + 10 * slot, count)
    clock.now = T0 + 33
    alarms.evaluate_all()
    assert state(alarms) == "OK"
    calls(history, T0 + 30, 8)
    clock.now = T0 + 43  # range: 1, 1, 8 -> one breaching of three
    alarms.evaluate_all()
    assert state(alarms) == "OK"
    calls(history, T0 + 40, 6)
    clock.now = T0 + 53  # range: 1, 8, 6 -> two of three
    alarms.evaluate_all()
    reason = described(alarms)["StateReason"]
    assert state(alarms) == "ALARM"
    assert reason.startswith("Threshold Crossed: 2 out of the last 3 datapoints [6.0 (")
    assert reason.endswith(
        "were greater than or equal to the threshold (5.0) (minimum 2 datapoints for OK -> "
        "ALARM transition)."
    )


@pytest.mark.parametrize(
    ("treat", "expected"),
    [
        ("missing", "INSUFFICIENT_DATA"),
        ("ignore", "ALARM"),  # SetAlarmState put it there; with no data it stays
        ("breaching", "ALARM"),
        ("notBreaching", "OK"),
    ],
)
def test_treat_missing_data_when_every_datapoint_is_missing(
    alarms: AlarmService, clock: Clock, treat: str, expected: str
) -> None:
    put(alarms, TreatMissingData=treat, EvaluationPeriods=2)
    alarms.call("SetAlarmState", {"AlarmName": "busy", "StateValue": "ALARM", "StateReason": "x"})
    if treat == "breaching":
        alarms.call("SetAlarmState", {"AlarmName": "busy", "StateValue": "OK", "StateReason": "x"})
    clock.now = T0 + 60
    alarms.evaluate_all()
    assert state(alarms) == expected


def test_breaching_missing_data_completes_m_of_n(
    alarms: AlarmService, history: MetricsHistory, clock: Clock
) -> None:
    put(alarms, TreatMissingData="breaching", EvaluationPeriods=3, DatapointsToAlarm=3)
    calls(history, T0 + 10, 6)
    clock.now = T0 + 33  # missing, 6, missing: three breaching
    alarms.evaluate_all()
    assert state(alarms) == "ALARM"


def test_a_percentile_alarm_reads_the_percentile(
    alarms: AlarmService, history: MetricsHistory, clock: Clock
) -> None:
    values = [1000.0] * 90 + [900_000.0] * 10  # p99 is in the slow tenth; the mean is not
    history.record(T0, [(LATENCY, catalog.MODEL_LATENCY, _values(values))])
    put(
        alarms,
        MetricName="ModelLatency",
        Statistic=None,
        ExtendedStatistic="p99",
        Threshold=500_000.0,
        ComparisonOperator="GreaterThanThreshold",
    )
    clock.now = T0 + 13
    alarms.evaluate_all()
    assert state(alarms) == "ALARM"
    data = json.loads(described(alarms)["StateReasonData"])
    assert data["extendedStatistic"] == "p99" and "statistic" not in data


def _values(values: list[float]) -> Cell:
    buckets: dict[int, int] = {}
    for value in values:
        key = sketch.bucket_key(value)
        buckets[key] = buckets.get(key, 0) + 1
    return Cell(len(values), sum(values), min(values), max(values), buckets)


def test_set_alarm_state_and_delete(alarms: AlarmService) -> None:
    put(alarms)
    alarms.call(
        "SetAlarmState",
        {
            "AlarmName": "busy",
            "StateValue": "ALARM",
            "StateReason": "testing",
            "StateReasonData": "{}",
        },
    )
    assert described(alarms)["StateReason"] == "testing"
    with pytest.raises(InvalidFormat):
        alarms.call(
            "SetAlarmState",
            {"AlarmName": "busy", "StateValue": "OK", "StateReason": "r", "StateReasonData": "{"},
        )
    with pytest.raises(ResourceNotFound) as missing:
        alarms.call("SetAlarmState", {"AlarmName": "nope", "StateValue": "OK", "StateReason": "r"})
    assert missing.value.status == 404
    with pytest.raises(ResourceNotFound, match="no alarm was deleted"):
        alarms.call("DeleteAlarms", {"AlarmNames": ["busy", "nope"]})
    assert state(alarms) == "ALARM"
    alarms.call("DeleteAlarms", {"AlarmNames": ["busy"]})
    assert alarms.call("DescribeAlarms", {})["MetricAlarms"] == []


def test_describe_filters_and_pages(alarms: AlarmService) -> None:
    topic = "arn:aws:sns:us-east-1:123456789012:pager"
    for index in range(7):
        put(alarms, AlarmName=f"a{index}", AlarmActions=[topic] if index % 2 else None)
    put(alarms, AlarmName="other")
    alarms.call("SetAlarmState", {"AlarmName": "a3", "StateValue": "ALARM", "StateReason": "r"})

    def names(**params: Any) -> list[str]:
        return [a["AlarmName"] for a in alarms.call("DescribeAlarms", params)["MetricAlarms"]]

    assert names(AlarmNamePrefix="a") == [f"a{i}" for i in range(7)]
    assert names(StateValue="ALARM") == ["a3"]
    assert names(ActionPrefix="arn:aws:sns:us-east-1:123456789012:pa") == ["a1", "a3", "a5"]
    assert names(AlarmTypes=["CompositeAlarm"]) == []
    seen: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"MaxRecords": 3}
        if token:
            params["NextToken"] = token
        page = alarms.call("DescribeAlarms", params)
        seen += [a["AlarmName"] for a in page["MetricAlarms"]]
        token = page.get("NextToken")
        if token is None:
            break
    assert seen == [*(f"a{i}" for i in range(7)), "other"]
    with pytest.raises(InvalidNextToken):
        alarms.call("DescribeAlarms", {"NextToken": "garbage"})
    with pytest.raises(InvalidParameterCombination):
        alarms.call("DescribeAlarms", {"AlarmNames": ["a1"], "AlarmNamePrefix": "a"})
    for_metric = alarms.call(
        "DescribeAlarmsForMetric",
        {"Namespace": "AWS/SageMaker", "MetricName": "Invocations", "Dimensions": DIMS},
    )["MetricAlarms"]
    assert len(for_metric) == 8
    assert alarms.call(
        "DescribeAlarmsForMetric",
        {"Namespace": "AWS/SageMaker", "MetricName": "Invocations", "Dimensions": DIMS[:1]},
    ) == {"MetricAlarms": []}


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        (
            {"ComparisonOperator": "LessThanLowerOrGreaterThanUpperThreshold"},
            InvalidParameterValue,
            "anomaly detection band",
        ),
        (
            {"Metrics": [{"Id": "m1", "Expression": "SUM(METRICS())"}]},
            InvalidParameterValue,
            "metric math",
        ),
        ({"Period": 15}, InvalidParameterValue, "must be 10, 20, 30 or a multiple of 60"),
        ({"Period": 60, "EvaluationPeriods": 1441}, InvalidParameterValue, "at most 86400 seconds"),
        (
            {"EvaluationPeriods": 2, "DatapointsToAlarm": 3},
            InvalidParameterValue,
            "DatapointsToAlarm (3)",
        ),
        ({"ExtendedStatistic": "p99"}, InvalidParameterCombination, "cannot both be given"),
        ({"Statistic": None}, MissingParameter, "Statistic or ExtendedStatistic"),
        ({"Statistic": None, "ExtendedStatistic": "p101"}, InvalidParameterValue, "p0 to p100"),
        ({"Threshold": None}, MissingParameter, "Threshold"),
        ({"TreatMissingData": "sometimes"}, InvalidParameterValue, "missing, ignore"),
        (
            {"AlarmActions": ["arn:aws:automate:us-east-1:ec2:stop"]},
            InvalidParameterValue,
            "SNS topics",
        ),
        ({"OKActions": [POLICY]}, InvalidParameterValue, "autoscaling service is not running"),
        ({"EvaluationInterval": 30}, InvalidParameterValue, "EvaluationInterval"),
    ],
)
def test_put_refuses_what_it_cannot_evaluate(
    alarms: AlarmService, change: dict[str, Any], error: type[ServiceError], words: str
) -> None:
    with pytest.raises(error, match=None) as raised:
        put(alarms, **change)
    assert words in raised.value.message
    assert alarms.call("DescribeAlarms", {})["MetricAlarms"] == []


def test_an_action_handler_registered_later_is_accepted_and_called(
    alarms: AlarmService, history: MetricsHistory, clock: Clock
) -> None:
    got: list[AlarmEvent] = []
    done = threading.Event()

    def scale(event: AlarmEvent) -> None:
        got.append(event)
        done.set()

    alarms.handlers.register(AUTOSCALING_PREFIX, scale)
    put(alarms, AlarmActions=[POLICY])
    calls(history, T0, 9)
    clock.now = T0 + 13
    alarms.evaluate_all()
    assert done.wait(5)
    event = got[0]
    assert (event.action_arn, event.old_state, event.new_state) == (
        POLICY,
        "INSUFFICIENT_DATA",
        "ALARM",
    )
    assert event.message["Trigger"]["Statistic"] == "SUM"
    assert event.alarm["StateValue"] == "ALARM"
    alarms.close()  # waits for the action's history item
    actions = alarms.call("DescribeAlarmHistory", {"HistoryItemType": "Action"})
    assert actions["AlarmHistoryItems"][0]["HistorySummary"] == (
        f"Successfully executed action {POLICY}"
    )


def test_disabled_actions_do_not_run(
    alarms: AlarmService, history: MetricsHistory, clock: Clock
) -> None:
    got: list[AlarmEvent] = []
    alarms.handlers.register(AUTOSCALING_PREFIX, got.append)
    put(alarms, AlarmActions=[POLICY])
    alarms.call("DisableAlarmActions", {"AlarmNames": ["busy", "unknown"]})
    assert described(alarms)["ActionsEnabled"] is False
    calls(history, T0, 9)
    clock.now = T0 + 13
    alarms.evaluate_all()
    alarms.close()
    assert state(alarms) == "ALARM" and got == []


def test_alarms_and_their_state_survive_a_restart(
    tmp_path: Path, history: MetricsHistory, clock: Clock
) -> None:
    first_store = AlarmStore.open(tmp_path)
    first = AlarmService(first_store, history, region="us-east-1", account_id="1", clock=clock)
    put(first, EvaluationPeriods=2, DatapointsToAlarm=1, TreatMissingData="notBreaching")
    first.call("SetAlarmState", {"AlarmName": "busy", "StateValue": "ALARM", "StateReason": "r"})
    first.close()
    first_store.close()
    again_store = AlarmStore.open(tmp_path)
    again = AlarmService(again_store, history, region="us-east-1", account_id="1", clock=clock)
    alarm = described(again)
    assert (alarm["StateValue"], alarm["StateReason"], alarm["DatapointsToAlarm"]) == (
        "ALARM",
        "r",
        1,
    )
    assert alarm["TreatMissingData"] == "notBreaching"
    assert len(again.call("DescribeAlarmHistory", {})["AlarmHistoryItems"]) == 2
    again.close()
    again_store.close()


def test_the_alarm_limit(alarms: AlarmService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("polyhost.metrics.alarms.MAX_ALARMS", 2)
    put(alarms, AlarmName="one")
    put(alarms, AlarmName="two")
    put(alarms, AlarmName="two", Threshold=9.0)  # replacing one is not a new alarm
    with pytest.raises(LimitExceeded):
        put(alarms, AlarmName="three")


def test_cloudwatch_api_hands_alarm_operations_over(
    alarms: AlarmService, history: MetricsHistory
) -> None:
    api = CloudWatchApi(history, alarms=alarms)
    assert "PutMetricAlarm" in api.operations
    put(alarms)
    assert api.call("DescribeAlarms", {})["MetricAlarms"][0]["AlarmName"] == "busy"
    without = CloudWatchApi(history)
    assert "PutMetricAlarm" not in without.operations


def test_a_repeating_handler_runs_once_per_period_while_the_alarm_stays_in_alarm(
    alarms: AlarmService, history: MetricsHistory, clock: Clock
) -> None:
    got: list[AlarmEvent] = []
    sns_like: list[AlarmEvent] = []
    alarms.handlers.register(AUTOSCALING_PREFIX, got.append, repeat=True)
    alarms.handlers.register("arn:aws:sns:", sns_like.append)  # not repeating
    put(alarms, AlarmActions=[POLICY, "arn:aws:sns:us-east-1:123456789012:t"])
    for slot in range(4):
        calls(history, T0 + 10 * slot, 9 + slot)
    clock.now = T0 + 13
    alarms.evaluate_all()  # INSUFFICIENT_DATA -> ALARM: both actions
    clock.now = T0 + 14
    alarms.evaluate_all()  # same period: nothing again
    clock.now = T0 + 23
    alarms.evaluate_all()  # a new period ended, still ALARM: the policy again
    clock.now = T0 + 33
    alarms.evaluate_all()
    alarms.close()
    assert [(e.old_state, e.new_state) for e in got] == [
        ("INSUFFICIENT_DATA", "ALARM"),
        ("ALARM", "ALARM"),
        ("ALARM", "ALARM"),
    ]
    assert len(sns_like) == 1
    # Each repeat carries that evaluation's datapoint, not the one of the change into ALARM.
    seen = [json.loads(e.alarm["StateReasonData"])["recentDatapoints"] for e in got]
    assert seen == [[9.0], [10.0], [11.0]]


def test_a_time_scale_reads_each_period_as_period_over_n_seconds(
    store: AlarmStore, history: MetricsHistory, clock: Clock
) -> None:
    scaled = AlarmService(
        store, history, region="us-east-1", account_id="123456789012", clock=clock, time_scale=6
    )
    try:
        # A 60-second alarm at scale 6 judges 10 real seconds: one slot of 9 calls breaches it.
        put(scaled, Period=60, Threshold=5.0)
        calls(history, T0, 9)
        clock.now = T0 + 13
        scaled.evaluate_all()
        assert state(scaled) == "ALARM"
        clock.now = T0 + 23  # the next 10 seconds had no calls
        scaled.evaluate_all()
        assert state(scaled) == "INSUFFICIENT_DATA"
    finally:
        scaled.close()
    with pytest.raises(ValueError, match="time_scale"):
        AlarmService(store, history, region="r", account_id="a", time_scale=7)
