"""Fuzz CloudWatch's alarm operations against a real server that evaluates what they store.

Requests follow botocore's `cloudwatch` model over JSON 1.0 and query, with values drawn from
pools that make valid alarms often (so the evaluator has odd ones to judge: percentiles, huge
and tiny periods and thresholds, every TreatMissingData) and broken the ways a hostile client
would (wrong types, NaN thresholds, forged tokens, bad JSON reason data, unknown actions).

The properties: never a 5xx, every answer a well-formed document of its protocol, and the
evaluator, running every 0.2 s meanwhile, never fails on what was accepted.
"""

from __future__ import annotations

import json
import time
from typing import Any
from xml.etree import ElementTree

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.hostile_client import ping, send_and_read
from tests.reliability.test_fuzz_cloudwatch_api import (
    CLOUDWATCH,
    DIMENSIONS,
    LEAF,
    METRICS,
    NAMESPACES,
    TIMES,
    WRONG,
    cloudwatch_request,
)
from tests.support.server import PolyhostProcess, ServerFactory

OPERATIONS = [
    "PutMetricAlarm",
    "DescribeAlarms",
    "DescribeAlarmsForMetric",
    "DeleteAlarms",
    "SetAlarmState",
    "DescribeAlarmHistory",
    "EnableAlarmActions",
    "DisableAlarmActions",
]
NAMES = st.sampled_from(["a", "b", "c", "", "x" * 300])
ACTIONS = st.lists(
    st.sampled_from(
        [
            "arn:aws:sns:us-east-1:123456789012:t",
            "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:x",
            "arn:aws:lambda:us-east-1:123456789012:function:f",
            "",
        ]
    ),
    max_size=3,
)
SPECIAL: dict[str, st.SearchStrategy[Any]] = {
    "AlarmName": NAMES,
    "AlarmNames": st.lists(NAMES, max_size=3),
    "AlarmNamePrefix": st.sampled_from(["a", "", "zz"]),
    "Namespace": st.sampled_from(NAMESPACES),
    "MetricName": st.sampled_from(METRICS),
    "Dimensions": DIMENSIONS,
    "Statistic": st.sampled_from(["Sum", "Average", "SampleCount", "Maximum", "Median"]),
    "ExtendedStatistic": st.sampled_from(["p50", "p99.9", "p0", "p100", "p101", "tm99"]),
    "Period": st.sampled_from([10, 20, 30, 60, 3600, 86_400, 15, 0, -10, 10**9]),
    "EvaluationPeriods": st.sampled_from([1, 2, 3, 100, 1441, 0, 10**6]),
    "DatapointsToAlarm": st.sampled_from([1, 2, 3, 0, 10**6]),
    "Threshold": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers()),
    "ComparisonOperator": st.sampled_from(
        [
            "GreaterThanOrEqualToThreshold",
            "LessThanThreshold",
            "GreaterThanUpperThreshold",
            "Bigger",
        ]
    ),
    "TreatMissingData": st.sampled_from(["missing", "ignore", "breaching", "notBreaching", "x"]),
    "EvaluateLowSampleCountPercentile": st.sampled_from(["evaluate", "ignore", ""]),
    "AlarmActions": ACTIONS,
    "OKActions": ACTIONS,
    "InsufficientDataActions": ACTIONS,
    "ActionsEnabled": st.booleans(),
    "Unit": st.sampled_from(["Count", "None", "Microseconds", "Bananas"]),
    "StateValue": st.sampled_from(["OK", "ALARM", "INSUFFICIENT_DATA", "MAYBE"]),
    "StateReason": st.text(max_size=20),
    "StateReasonData": st.sampled_from(["{}", '{"a": [1]}', "{", "[" * 3000, "null"]),
    "NextToken": st.one_of(st.text(max_size=40), st.sampled_from(["", "e30=", "eyJhZnRlciI6MX0"])),
    "MaxRecords": st.integers(-1, 200),
    "HistoryItemType": st.sampled_from(["StateUpdate", "Action", "ConfigurationUpdate", "X"]),
    "StartDate": TIMES,
    "EndDate": TIMES,
    "ScanBy": st.sampled_from(["TimestampAscending", "TimestampDescending", "Sideways"]),
    "AlarmTypes": st.lists(st.sampled_from(["MetricAlarm", "CompositeAlarm", "X"]), max_size=2),
}
REQUIRED_FIRST = {
    "PutMetricAlarm": (
        "AlarmName", "Namespace", "MetricName", "Period", "EvaluationPeriods", "Threshold",
        "ComparisonOperator", "Statistic",
    ),
}  # fmt: skip


def member_value(member: str) -> st.SearchStrategy[Any]:
    valid = SPECIAL.get(member, LEAF)
    return st.one_of(valid, valid, valid, valid, WRONG)


def params_for(operation: str) -> st.SearchStrategy[dict[str, Any]]:
    shape = CLOUDWATCH.operation_model(operation).input_shape
    assert shape is not None
    names = list(shape.members)
    wanted = REQUIRED_FIRST.get(operation, ())
    return st.fixed_dictionaries(
        {name: SPECIAL[name] for name in wanted},
        optional={name: member_value(name) for name in names if name not in wanted},
    )


REQUESTS = st.one_of(
    *[
        st.tuples(st.just(op), st.sampled_from(["json", "query"]), params_for(op))
        for op in OPERATIONS
    ]
)


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    return start_server("--alarm-evaluation-interval", "0.2", name="fuzz-alarms")


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=REQUESTS, cut=st.sampled_from([0, 0, 0, 0, 5]))
def test_fuzz_alarm_operations(
    server: PolyhostProcess, request: tuple[str, str, dict[str, Any]], cut: int
) -> None:
    operation, wire, params = request
    answer = send_and_read(server.port, cloudwatch_request(operation, wire, params, cut))
    assert answer.status is not None, answer.raw[:300]
    assert answer.status < 500, answer.body[:500]
    if wire == "json":
        assert isinstance(json.loads(answer.body), dict)
    else:
        ElementTree.fromstring(answer.body)


def test_the_evaluator_judged_every_accepted_alarm(server: PolyhostProcess) -> None:
    cloudwatch = server.cloudwatch()
    # Whatever the fuzzing left (its DeleteAlarms may have removed everything), four alarms of
    # known shape join it, so the evaluator always has odd ones to judge after the fuzzing.
    for treat in ("breaching", "notBreaching", "missing", "ignore"):
        cloudwatch.put_metric_alarm(
            AlarmName=f"after-fuzz-{treat}",
            Namespace="AWS/SageMaker",
            MetricName="Invocations",
            Dimensions=[{"Name": "EndpointName", "Value": "none"}],
            Statistic="Sum",
            Period=10,
            EvaluationPeriods=3,
            DatapointsToAlarm=2,
            Threshold=1.0,
            ComparisonOperator="GreaterThanOrEqualToThreshold",
            TreatMissingData=treat,
        )
    deadline = time.monotonic() + 10.0
    left = cloudwatch.describe_alarms()["MetricAlarms"]
    while time.monotonic() < deadline and not judged(left):
        time.sleep(0.2)
        left = cloudwatch.describe_alarms()["MetricAlarms"]
    assert ping(server.port) == 200
    # No endpoint, so every period is missing: breaching goes to ALARM, notBreaching to OK.
    for alarm in left:
        expected = expected_state(alarm)
        if expected is not None:
            assert alarm["StateValue"] == expected, alarm
    log = server.log()
    assert "alarm evaluation failed" not in log
    assert "evaluating alarm" not in log
    assert "internal error" not in log


def expected_state(alarm: dict[str, Any]) -> str | None:
    """The state an alarm on a metric with no data must reach, where its treatment fixes one."""
    return {"breaching": "ALARM", "notBreaching": "OK"}.get(alarm.get("TreatMissingData", ""))


def judged(alarms: list[dict[str, Any]]) -> bool:
    return all(
        alarm["StateValue"] == expected_state(alarm)
        for alarm in alarms
        if expected_state(alarm) is not None
    )
