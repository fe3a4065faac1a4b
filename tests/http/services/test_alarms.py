"""CloudWatch alarms on a real server, through boto3 and the `aws` CLI: an alarm on a real
endpoint's Invocations goes INSUFFICIENT_DATA -> ALARM while traffic crosses its threshold and
-> OK when the traffic stops, publishing CloudWatch's notification to SNS topics on moto's
server (read back from SQS queues subscribed to them); errors carry CloudWatch's codes; a
restart keeps the alarms and their state.

The server evaluates every second (`--alarm-evaluation-interval 1`) and the alarm's period is
10 s, the recorder's slot, so a state change takes seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.asyncinf.test_notifications import Subscribed
from tests.support.endpoints import deploy, echo_container, invoke
from tests.support.s3 import MotoS3, s3_server  # noqa: F401
from tests.support.server import PolyhostProcess, ServerFactory
from tests.support.waiting import eventually

ENDPOINT = "alarmed"
DIMS = [
    {"Name": "EndpointName", "Value": ENDPOINT},
    {"Name": "VariantName", "Value": "AllTraffic"},
    {"Name": "ContainerName", "Value": "model"},
]
THRESHOLD = 20.0
AWS = Path(sys.executable).parent / "aws"
REBOOT = "arn:aws:swf:us-east-1:123456789012:action/actions/AWS_EC2.InstanceId.Reboot/1.0"


@pytest.fixture(scope="module")
def server(start_server: ServerFactory, s3_server: MotoS3) -> PolyhostProcess:  # noqa: F811
    return start_server(
        "--alarm-evaluation-interval",
        "1",
        name="alarms",
        env={**s3_server.env(), "AWS_ENDPOINT_URL_SNS": s3_server.endpoint},
    )


@pytest.fixture(scope="module")
def endpoint(server: PolyhostProcess) -> str:
    deploy(server.sagemaker(), ENDPOINT, [echo_container("model")])
    return ENDPOINT


class Traffic:
    """Requests sent as fast as one client can, until stopped."""

    def __init__(self, server: PolyhostProcess) -> None:
        self._runtime = server.runtime()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            invoke(self._runtime, ENDPOINT, b"x")
            self._stop.wait(0.01)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def last_sums(server: PolyhostProcess) -> list[float]:
    now = datetime.now(UTC)
    points = server.cloudwatch().get_metric_statistics(
        Namespace="AWS/SageMaker", MetricName="Invocations", Dimensions=DIMS,
        StartTime=now - timedelta(minutes=2), EndTime=now, Period=10, Statistics=["Sum"],
    )["Datapoints"]  # fmt: skip
    return [p["Sum"] for p in sorted(points, key=lambda p: p["Timestamp"])]


def alarm(server: PolyhostProcess, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = server.cloudwatch().describe_alarms(AlarmNames=[name])[
        "MetricAlarms"
    ]
    assert len(found) == 1
    return found[0]


def in_state(server: PolyhostProcess, name: str, state: str) -> dict[str, Any]:
    return eventually(
        lambda: alarm(server, name),
        f"alarm {name} in {state}",
        timeout=60,
        interval=0.5,
        until=lambda a: a["StateValue"] == state,
    )


@pytest.fixture
def topics(s3_server: MotoS3) -> Iterator[tuple[Subscribed, Subscribed]]:  # noqa: F811
    yield Subscribed(s3_server, "alarm"), Subscribed(s3_server, "ok")


def test_traffic_raises_the_alarm_and_quiet_clears_it(
    server: PolyhostProcess, endpoint: str, topics: tuple[Subscribed, Subscribed]
) -> None:
    alarm_topic, ok_topic = topics
    cloudwatch = server.cloudwatch()
    with Traffic(server):
        # The alarm goes on once two busy periods are in the history: the one an evaluation
        # judges (the last that ended a few seconds ago) is busy already, so the alarm's first
        # state change is to ALARM.
        eventually(
            lambda: last_sums(server),
            "two busy 10-second periods",
            timeout=60,
            interval=0.5,
            until=lambda sums: len(sums) >= 2 and min(sums[-2:]) >= THRESHOLD,
        )
        cloudwatch.put_metric_alarm(
            AlarmName="busy", AlarmDescription="more than 2 requests a second",
            Namespace="AWS/SageMaker", MetricName="Invocations", Dimensions=DIMS,
            Statistic="Sum", Period=10, EvaluationPeriods=1, Threshold=THRESHOLD,
            ComparisonOperator="GreaterThanOrEqualToThreshold", TreatMissingData="notBreaching",
            AlarmActions=[alarm_topic.topic], OKActions=[ok_topic.topic],
        )  # fmt: skip
        raised = in_state(server, "busy", "ALARM")
    assert raised["StateReason"].startswith("Threshold Crossed: 1 datapoint [")
    assert json.loads(raised["StateReasonData"])["recentDatapoints"][0] >= THRESHOLD
    notice = alarm_topic.receive()
    assert notice["AlarmName"] == "busy" and notice["NewStateValue"] == "ALARM"
    assert notice["OldStateValue"] == "INSUFFICIENT_DATA"
    assert notice["AlarmArn"] == "arn:aws:cloudwatch:us-east-1:123456789012:alarm:busy"
    assert notice["Trigger"]["MetricName"] == "Invocations"
    assert notice["Trigger"]["Statistic"] == "SUM"
    assert notice["Trigger"]["Threshold"] == THRESHOLD
    assert {"name": "ContainerName", "value": "model"} in notice["Trigger"]["Dimensions"]

    cleared = in_state(server, "busy", "OK")  # no traffic: missing periods are not breaching
    assert cleared["StateUpdatedTimestamp"] > raised["StateUpdatedTimestamp"]
    assert ok_topic.receive()["NewStateValue"] == "OK"
    assert alarm_topic.empty()

    states = cloudwatch.describe_alarm_history(AlarmName="busy", HistoryItemType="StateUpdate")
    assert [i["HistorySummary"] for i in states["AlarmHistoryItems"]] == [
        "Alarm updated from ALARM to OK",
        "Alarm updated from INSUFFICIENT_DATA to ALARM",
    ]
    actions = eventually(
        lambda: cloudwatch.describe_alarm_history(AlarmName="busy", HistoryItemType="Action")[
            "AlarmHistoryItems"
        ],
        "both actions recorded",
        interval=0.2,
        until=lambda items: len(items) == 2,
    )
    assert {i["HistorySummary"] for i in actions} == {
        f"Successfully executed action {alarm_topic.topic}",
        f"Successfully executed action {ok_topic.topic}",
    }
    assert [a["AlarmName"] for a in cloudwatch.describe_alarms_for_metric(
        Namespace="AWS/SageMaker", MetricName="Invocations", Dimensions=DIMS
    )["MetricAlarms"]] == ["busy"]  # fmt: skip
    cloudwatch.delete_alarms(AlarmNames=["busy"])
    assert cloudwatch.describe_alarms(AlarmNames=["busy"])["MetricAlarms"] == []


def error_of(call: Any, **params: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as raised:
        call(**params)
    error = raised.value.response["Error"]
    status = raised.value.response["ResponseMetadata"]["HTTPStatusCode"]
    return error["Code"], error["Message"], status


BASE: dict[str, Any] = {
    "AlarmName": "bad", "Namespace": "AWS/SageMaker", "MetricName": "Invocations",
    "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 1, "Threshold": 1.0,
    "ComparisonOperator": "GreaterThanThreshold",
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        (
            {"ComparisonOperator": "GreaterThanUpperThreshold"},
            "InvalidParameterValue",
            "anomaly detection band",
        ),
        ({"Period": 45}, "InvalidParameterValue", "10, 20, 30 or a multiple of 60"),
        ({"ExtendedStatistic": "p99"}, "InvalidParameterCombination", "cannot both be given"),
        ({"AlarmActions": [REBOOT]}, "InvalidParameterValue", "SNS topics"),
        (
            {"Metrics": [{"Id": "m1", "Expression": "m2 * 2"}]},
            "InvalidParameterValue",
            "metric math",
        ),
        (
            {"EvaluationPeriods": 2, "DatapointsToAlarm": 3},
            "InvalidParameterValue",
            "less than or equal to EvaluationPeriods",
        ),
    ],
)
def test_put_metric_alarm_errors_are_cloudwatchs(
    server: PolyhostProcess, change: dict[str, Any], code: str, words: str
) -> None:
    cloudwatch = server.cloudwatch()
    found_code, message, status = error_of(cloudwatch.put_metric_alarm, **{**BASE, **change})
    assert (found_code, status) == (code, 400)
    assert words in message


def test_missing_alarms_are_resource_not_found_in_every_protocol(
    server: PolyhostProcess, tmp_path: Path
) -> None:
    for protocol in (None, "query", "smithy-rpc-v2-cbor"):
        cloudwatch = server.cloudwatch(protocol, tmp_path)
        code, message, status = error_of(
            cloudwatch.set_alarm_state, AlarmName="ghost", StateValue="OK", StateReason="r"
        )
        assert (code, status) == ("ResourceNotFound", 404), protocol
        assert "ghost" in message
        cloudwatch.put_metric_alarm(**{**BASE, "AlarmName": f"p-{protocol}"})  # no output
        assert alarm(server, f"p-{protocol}")["StateValue"] == "INSUFFICIENT_DATA"
        cloudwatch.delete_alarms(AlarmNames=[f"p-{protocol}"])


@pytest.mark.skipif(not AWS.exists(), reason="the aws CLI is not installed")
def test_the_aws_cli_puts_and_describes(server: PolyhostProcess) -> None:
    def aws(*args: str) -> str:
        return subprocess.run(
            [str(AWS), "cloudwatch", *args, "--endpoint-url", server.url, "--output", "json"],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout  # fmt: skip

    aws(
        "put-metric-alarm", "--alarm-name", "cli", "--namespace", "AWS/SageMaker",
        "--metric-name", "ModelLatency", "--extended-statistic", "p99", "--period", "60",
        "--evaluation-periods", "3", "--datapoints-to-alarm", "2", "--threshold", "250000",
        "--comparison-operator", "GreaterThanThreshold",
    )  # fmt: skip
    shown = json.loads(aws("describe-alarms", "--alarm-name-prefix", "cli"))["MetricAlarms"]
    assert [(a["AlarmName"], a["ExtendedStatistic"], a["DatapointsToAlarm"]) for a in shown] == [
        ("cli", "p99", 2)
    ]
    aws("delete-alarms", "--alarm-names", "cli")


def test_alarms_survive_a_restart(start_server: ServerFactory) -> None:
    server = start_server("--alarm-evaluation-interval", "1", name="alarms-restart")
    cloudwatch = server.cloudwatch()
    cloudwatch.put_metric_alarm(**{**BASE, "AlarmName": "kept", "DatapointsToAlarm": 1})
    cloudwatch.set_alarm_state(AlarmName="kept", StateValue="ALARM", StateReason="by hand")
    server.stop()  # restart() starts a new process: the old one would be left running
    server.restart()
    kept = alarm(server, "kept")
    # ALARM until an evaluation finds the metric (no endpoint: all missing -> INSUFFICIENT_DATA)
    assert kept["StateValue"] in ("ALARM", "INSUFFICIENT_DATA")
    assert (kept["Threshold"], kept["DatapointsToAlarm"], kept["Period"]) == (1.0, 1, 60)
    summaries = [
        item["HistorySummary"]
        for item in server.cloudwatch().describe_alarm_history(AlarmName="kept")[
            "AlarmHistoryItems"
        ]
    ]
    assert "Alarm updated from INSUFFICIENT_DATA to ALARM" in summaries
    assert 'Alarm "kept" created' in summaries


def test_alarm_operations_are_authorised_as_cloudwatch_actions(
    start_server: ServerFactory, tmp_path: Path
) -> None:
    key, secret = "AKIAALARMS0000000001", "alarms-secret-key-0123456789abcdef"
    principal = {
        "name": "operator",
        "access_key_id": key,
        "secret_access_key": secret,
        "policies": [
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "cloudwatch:*", "Resource": "*"},
                    {"Effect": "Deny", "Action": "cloudwatch:DeleteAlarms", "Resource": "*"},
                ],
            }
        ],
    }
    auth_file = tmp_path / "principals.json"
    auth_file.write_text(json.dumps({"principals": [principal]}), encoding="utf-8")
    server = start_server("--auth-file", str(auth_file), name="alarms-auth")
    cloudwatch = boto3.client(
        "cloudwatch", endpoint_url=server.url, region_name="us-east-1",
        aws_access_key_id=key, aws_secret_access_key=secret,
    )  # fmt: skip
    cloudwatch.put_metric_alarm(**{**BASE, "AlarmName": "guarded"})
    code, message, status = error_of(cloudwatch.delete_alarms, AlarmNames=["guarded"])
    assert (code, status) == ("AccessDeniedException", 403)
    assert "cloudwatch:DeleteAlarms" in message
    assert [a["AlarmName"] for a in cloudwatch.describe_alarms()["MetricAlarms"]] == ["guarded"]
