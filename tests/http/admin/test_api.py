"""The admin JSON API after real traffic, on a server that keeps metric history: what the
dashboard and `polyhost top` read (/api/containers, /api/series, /api/endpoints, /api/logs).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import deploy, echo_container, invoke, wait_status
from tests.support.server import FAULTY_IMAGE, PolyhostProcess
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[3]


def api(server: PolyhostProcess, path: str, **params: str) -> tuple[int, Any]:
    url = server.admin_url + path + (f"?{urlencode(params)}" if params else "")
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_containers_show_their_traffic(server: PolyhostProcess) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    deploy(sagemaker, "watched", [echo_container("a"), echo_container("b")], mode="Direct")
    for _ in range(6):
        invoke(runtime, "watched", b"x", TargetContainerHostname="a")
    invoke(runtime, "watched", b"x", TargetContainerHostname="b")
    with pytest.raises(ClientError):
        invoke(runtime, "watched", b"x", TargetContainerHostname="b", CustomAttributes="status=500")

    def rows() -> dict[str, dict[str, Any]] | None:
        status, answer = api(server, "/api/containers")
        assert status == 200 and answer["history"] is True
        found = {r["hostname"]: r for r in answer["containers"] if r["endpoint"] == "watched"}
        if found.keys() != {"a", "b"}:
            return None
        # Requests may straddle two recordings: wait until all of them (and b's error) are in.
        counted = {
            h: round((r["requests_per_s"] or 0) * (r["window_s"] or 0)) for h, r in found.items()
        }
        return found if counted == {"a": 6, "b": 2} and found["b"]["error_rate"] else None

    found = eventually(rows, "the history to record the requests", interval=0.2)
    a, b = found["a"], found["b"]
    assert (a["variant"], a["instance"], a["status"], a["up"]) == ("AllTraffic", "i-0", "up", True)
    assert a["restarts"] == 0
    assert a["requests_per_s"] == pytest.approx(6 / a["window_s"])
    assert b["requests_per_s"] == pytest.approx(2 / b["window_s"])
    assert a["error_rate"] == 0 and b["error_rate"] == pytest.approx(0.5)
    assert 0 < a["p50_ms"] <= a["p99_ms"] < 60_000
    assert a["rss_bytes"] > 1_000_000 and a["memory_percent"] > 0
    assert a["cpu_percent"] is not None

    def invocations() -> list[Any] | None:
        status, answer = api(
            server, "/api/series",
            endpoint="watched", container="a", metric="Invocations", range="1h",
        )  # fmt: skip
        assert status == 200 and answer["period"] == 60 and answer["unit"] == "None"
        series = answer["series"]
        total = sum(p["sum"] for s in series for p in s["datapoints"])
        return series if total == 6 else None

    series = eventually(invocations, "the 1h series to hold the six requests", interval=0.2)
    assert [(s["variant"], s["container"], s["instance"]) for s in series] == [
        ("AllTraffic", "a", None)
    ]
    status, answer = api(
        server, "/api/series", endpoint="watched", container="a",
        metric="ContainerLatency", range="7d",
    )  # fmt: skip
    assert status == 200 and answer["period"] == 3600
    points = [p for s in answer["series"] for p in s["datapoints"]]
    assert points and all(p["p50"] <= p["p99"] for p in points)


@pytest.mark.parametrize(
    ("params", "complaint"),
    [
        ({"metric": "Invocations"}, "endpoint is required"),
        ({"endpoint": "e", "metric": "Nope"}, "Unknown metric"),
        ({"endpoint": "e", "metric": "Invocations", "range": "1y"}, "Unknown range"),
        ({"endpoint": "e", "metric": "Invocations", "colour": "red"}, "Unknown query parameter"),
        ({"endpoint": "e" * 300, "metric": "Invocations"}, "longer than"),
    ],
)
def test_a_bad_series_query_is_refused(
    server: PolyhostProcess, params: dict[str, str], complaint: str
) -> None:
    status, answer = api(server, "/api/series", **params)
    assert status == 400 and complaint in answer["message"]


def test_endpoints_show_status_variants_and_failure_reason(
    server: PolyhostProcess,
) -> None:
    sagemaker = server.sagemaker()
    deploy(sagemaker, "listed", [echo_container("only")])
    assert wait_status(sagemaker, "listed")["EndpointStatus"] == "InService"
    deploy(
        sagemaker, "broken",
        [{"Image": FAULTY_IMAGE, "Environment": {"FAULT": "exit-at-start"}}],
    )  # fmt: skip
    assert wait_status(sagemaker, "broken")["EndpointStatus"] == "Failed"
    status, answer = api(server, "/api/endpoints")
    assert status == 200 and answer["truncated"] is False
    by_name = {e["name"]: e for e in answer["endpoints"]}
    listed, broken = by_name["listed"], by_name["broken"]
    assert listed["status"] == "InService" and listed["failure_reason"] is None
    assert listed["variants"][0]["name"] == "AllTraffic"
    assert listed["variants"][0]["current_instance_count"] == 1
    assert broken["status"] == "Failed"
    assert "exited with code 3" in broken["failure_reason"]


def test_a_container_log_tail(server: PolyhostProcess) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    deploy(sagemaker, "tailed", [echo_container("a"), echo_container("b")], mode="Direct")
    for i in range(5):
        invoke(
            runtime, "tailed", b"x", TargetContainerHostname="a", CustomAttributes=f"say=line-{i}"
        )
    invoke(runtime, "tailed", b"x", TargetContainerHostname="b", CustomAttributes="say=from-b")

    def tail() -> Any:
        status, answer = api(server, "/api/logs", endpoint="tailed", container="a", lines="2")
        assert status == 200, answer
        return answer if "line-4" in answer["streams"][0]["text"] else None

    answer = eventually(tail, "a's last line in its log", interval=0.2)
    (stream,) = answer["streams"]
    assert stream["text"].splitlines() == ["a: line-3", "a: line-4"]
    assert (stream["name"], stream["variant"], stream["instance"], stream["container"]) == (
        "AllTraffic/i-0/a", "AllTraffic", "i-0", "a",
    )  # fmt: skip
    assert stream["size"] >= len(stream["text"])
    status, answer = api(
        server, "/api/logs",
        endpoint="tailed", container="b", variant="AllTraffic", instance="i-0",
    )  # fmt: skip
    assert status == 200 and "from-b" in answer["streams"][0]["text"]
    assert "line-" not in answer["streams"][0]["text"]

    status, answer = api(server, "/api/logs", endpoint="tailed", container="nope")
    assert status == 404 and "its containers are: a, b" in answer["message"]
    status, answer = api(server, "/api/logs", endpoint="tailed", container="a", instance="i-9")
    assert status == 404
    status, answer = api(server, "/api/logs", endpoint="absent", container="a")
    assert status == 404 and "absent" in answer["message"]


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("container=a", "endpoint is required"),
        ("endpoint=e", "container is required"),
        ("endpoint=e&container=a&lines=0", "from 1 to 1000"),
        ("endpoint=e&container=a&lines=1001", "from 1 to 1000"),
        ("endpoint=e&container=a&lines=-3", "from 1 to 1000"),
        ("endpoint=e&container=a&lines=many", "from 1 to 1000"),
        ("endpoint=e&container=a&offset=5", "Unknown query parameter"),
        ("endpoint=e&endpoint=f&container=a", "more than once"),
        ("endpoint=" + "e" * 300 + "&container=a", "longer than"),
        ("endpoint=%FF&container=a", "UTF-8 percent-encoded"),
    ],
)
def test_a_bad_log_query_is_refused(server: PolyhostProcess, query: str, complaint: str) -> None:
    try:
        with urllib.request.urlopen(f"{server.admin_url}/api/logs?{query}", timeout=30):
            raise AssertionError("accepted")
    except urllib.error.HTTPError as error:
        answer = json.loads(error.read())
        assert error.code == 400 and complaint in answer["message"], answer
        assert answer["__type"] == "ValidationException"


def test_scaling_shows_a_targets_activity_and_recorded_capacity(server: PolyhostProcess) -> None:
    from tests.control.test_components import components_endpoint, create_component

    sagemaker, aas = server.sagemaker(), server.autoscaling()
    components_endpoint(sagemaker, "scaled-host", instances=1, instance_type="ml.m5.xlarge")
    create_component(sagemaker, "scaled", "scaled-host", copies=1, cpus=0.25, memory_mb=128)
    resource, dimension = (
        "inference-component/scaled",
        "sagemaker:inference-component:DesiredCopyCount",
    )
    aas.register_scalable_target(
        ServiceNamespace="sagemaker", ResourceId=resource, ScalableDimension=dimension,
        MinCapacity=1, MaxCapacity=3,
    )  # fmt: skip
    policy = aas.put_scaling_policy(
        PolicyName="more", ServiceNamespace="sagemaker", ResourceId=resource,
        ScalableDimension=dimension, PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity", "Cooldown": 60,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
        },
    )  # fmt: skip
    cloudwatch = server.cloudwatch()
    cloudwatch.put_metric_alarm(
        AlarmName="scaled-busy", Namespace="AWS/SageMaker", MetricName="Invocations",
        Dimensions=[{"Name": "InferenceComponentName", "Value": "scaled"}], Statistic="Sum",
        Period=60, EvaluationPeriods=1, Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold", AlarmActions=[policy["PolicyARN"]],
    )  # fmt: skip
    cloudwatch.set_alarm_state(
        AlarmName="scaled-busy", StateValue="ALARM", StateReason="Threshold Crossed: test",
        StateReasonData=json.dumps({"version": "1.0", "recentDatapoints": [5.0]}),
    )  # fmt: skip

    def scaled() -> dict[str, Any] | None:
        status, answer = api(server, "/api/scaling", range="1h")
        assert status == 200, answer
        (target,) = [t for t in answer["targets"] if t["resource_id"] == resource]
        done = target["activities"] and target["activities"][0]["status"] == "Successful"
        recorded = [value for _, value in target["series"]["capacity"]]
        return target if done and recorded and recorded[-1] == 2 else None

    target = eventually(scaled, "the scale-out to be done and recorded", timeout=45, interval=0.5)
    assert (target["kind"], target["component"], target["min"], target["max"]) == (
        "component", "scaled", 1, 3,
    )  # fmt: skip
    assert [p["name"] for p in target["policies"]] == ["more"]
    assert target["policies"][0]["type"] == "StepScaling"
    assert target["capacity_now"] == {"desired": 2, "current": 2}
    newest = target["activities"][0]
    assert newest["description"] == "Setting desired copy count to 2."
    assert newest["cause"] == "monitor alarm scaled-busy in state ALARM triggered policy more"
    assert newest["start"] <= newest["end"]
    assert target["series"]["capacity_metric"] == "CopyCount"
    assert all(value in (1, 2) for _, value in target["series"]["capacity"])


@pytest.mark.parametrize(
    ("query", "complaint"),
    [("range=2y", "Unknown range '2y'"), ("resource=x", "Unknown query parameter(s) resource")],
)
def test_a_bad_scaling_query_is_refused(
    server: PolyhostProcess, query: str, complaint: str
) -> None:
    try:
        urllib.request.urlopen(f"{server.admin_url}/api/scaling?{query}", timeout=10)
    except urllib.error.HTTPError as error:
        assert error.code == 400
        assert complaint in json.loads(error.read())["message"]
    else:
        pytest.fail("the query was accepted")
