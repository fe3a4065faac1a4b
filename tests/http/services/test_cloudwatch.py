"""CloudWatch's API on a real server after real traffic, read with boto3 and the `aws` CLI.

One Direct endpoint with two containers gets a known number of answers, client errors, server
errors and timeouts per container; then the per-container series must count exactly that,
through GetMetricStatistics and GetMetricData alike, in every protocol botocore speaks. The
recorder samples every 10 seconds, so each test waits (with a generous deadline) for the data
to arrive instead of sleeping a fixed time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import deploy, invoke
from tests.support.server import BUSY_IMAGE, REGION, PolyhostProcess, ServerFactory
from tests.support.waiting import eventually

ENDPOINT = "watched"
SM = "AWS/SageMaker"
RESOURCES = "/aws/sagemaker/Endpoints"
EXPECTED = {  # container: (invocations, 4xx, 5xx)
    "a": (12, 2, 4),
    "b": (4, 0, 0),
}
DEADLINE_S = 90.0
POLL_S = 0.5  # the recorder samples every 10 s
AWS = Path(sys.executable).parent / "aws"


def dims(container: str | None = None, endpoint: str = ENDPOINT) -> list[dict[str, str]]:
    out = [
        {"Name": "EndpointName", "Value": endpoint},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    if container is not None:
        out.append({"Name": "ContainerName", "Value": container})
    return out


def busy(hostname: str) -> dict[str, Any]:
    return {
        "Image": BUSY_IMAGE,
        "ContainerHostname": hostname,
        "Environment": {"ECHO_NAME": hostname},
    }


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    return start_server("--invocation-timeout", "1", name="cloudwatch", busy=True)


@pytest.fixture(scope="module")
def window(server: PolyhostProcess) -> dict[str, datetime]:
    """Deploy, send the known traffic, and wait until the history counts all of it."""
    started = datetime.now(UTC) - timedelta(minutes=2)
    deploy(server.sagemaker(), ENDPOINT, [busy("a"), busy("b")], mode="Direct")
    runtime = server.runtime()
    for attributes, times in (("", 6), ("status=404", 2), ("status=500", 3), ("sleep=2.5", 1)):
        for _ in range(times):
            try:
                invoke(
                    runtime,
                    ENDPOINT,
                    b"x",
                    TargetContainerHostname="a",
                    CustomAttributes=attributes or "none=1",
                )
            except ClientError:
                assert attributes  # only the error cases may fail
    for _ in range(4):
        invoke(runtime, ENDPOINT, b"y", TargetContainerHostname="b")
    cloudwatch = server.cloudwatch()

    def total(name: str, container: str) -> float:
        answer = cloudwatch.get_metric_statistics(
            Namespace=SM, MetricName=name, Dimensions=dims(container), StartTime=started,
            EndTime=datetime.now(UTC) + timedelta(minutes=2), Period=60, Statistics=["Sum"],
        )  # fmt: skip
        return float(sum(point["Sum"] for point in answer["Datapoints"]))

    eventually(
        lambda: [total(n, c) for c in "ab" for n in ("Invocations", "Invocation5XXErrors")],
        "invocations and 5xx errors of a and b",
        DEADLINE_S,
        POLL_S,
        until=lambda got: got == [12.0, 4.0, 4.0, 0.0],
    )
    return {"start": started, "end": datetime.now(UTC) + timedelta(minutes=2)}


def sums(answer: dict[str, Any]) -> tuple[float, float]:
    points = answer["Datapoints"]
    return sum(p["Sum"] for p in points), sum(p["SampleCount"] for p in points)


@pytest.mark.parametrize("container", ["a", "b"])
def test_get_metric_statistics_counts_each_containers_calls(
    server: PolyhostProcess, window: dict[str, datetime], container: str
) -> None:
    cloudwatch = server.cloudwatch()
    calls, client_errors, server_errors = EXPECTED[container]
    found = {}
    for name in ("Invocations", "Invocation4XXErrors", "Invocation5XXErrors"):
        answer = cloudwatch.get_metric_statistics(
            Namespace=SM,
            MetricName=name,
            Dimensions=dims(container),
            StartTime=window["start"],
            EndTime=window["end"],
            Period=60,
            Statistics=["Sum", "SampleCount"],
        )
        found[name] = sums(answer)
    assert found["Invocations"] == (calls, calls)
    assert found["Invocation4XXErrors"][0] == client_errors
    assert found["Invocation5XXErrors"][0] == server_errors  # the timeout included
    # one value per call, so the Average of an error series is its rate
    assert found["Invocation4XXErrors"][1] >= calls


def test_get_metric_data_counts_the_same(
    server: PolyhostProcess, window: dict[str, datetime]
) -> None:
    queries = []
    for container in "ab":
        for name in ("Invocations", "Invocation4XXErrors", "Invocation5XXErrors"):
            queries.append(
                {
                    "Id": f"{container}_{name.lower()}",
                    "MetricStat": {
                        "Metric": {
                            "Namespace": SM,
                            "MetricName": name,
                            "Dimensions": dims(container),
                        },
                        "Period": 60,
                        "Stat": "Sum",
                    },
                }
            )
    answer = server.cloudwatch().get_metric_data(
        MetricDataQueries=queries, StartTime=window["start"], EndTime=window["end"]
    )
    got = {r["Id"]: sum(r["Values"]) for r in answer["MetricDataResults"]}
    for container, (calls, client_errors, server_errors) in EXPECTED.items():
        assert got[f"{container}_invocations"] == calls
        assert got[f"{container}_invocation4xxerrors"] == client_errors
        assert got[f"{container}_invocation5xxerrors"] == server_errors
    assert all(r["StatusCode"] == "Complete" for r in answer["MetricDataResults"])


def test_latencies_and_variant_series(server: PolyhostProcess, window: dict[str, datetime]) -> None:
    cloudwatch = server.cloudwatch()
    common = {"StartTime": window["start"], "EndTime": window["end"], "Period": 3600}
    (latency,) = cloudwatch.get_metric_statistics(
        Namespace=SM, MetricName="ContainerLatency", Dimensions=dims("a"),
        ExtendedStatistics=["p50", "p99"], **common,
    )["Datapoints"]  # fmt: skip
    assert latency["Unit"] == "Microseconds"
    assert 0 < latency["ExtendedStatistics"]["p50"] <= latency["ExtendedStatistics"]["p99"]
    (model,) = cloudwatch.get_metric_statistics(
        Namespace=SM,
        MetricName="ModelLatency",
        Dimensions=dims(),
        Statistics=["SampleCount"],
        **common,
    )["Datapoints"]
    assert model["SampleCount"] == 15  # every answer of a and b; the timeout has none
    (per_instance,) = cloudwatch.get_metric_statistics(
        Namespace=SM,
        MetricName="InvocationsPerInstance",
        Dimensions=dims(),
        Statistics=["Sum"],
        **common,
    )["Datapoints"]
    assert per_instance["Sum"] == 16
    (setup,) = cloudwatch.get_metric_statistics(
        Namespace=SM,
        MetricName="ModelSetupTime",
        Dimensions=dims(),
        Statistics=["SampleCount", "Minimum"],
        **common,
    )["Datapoints"]
    # One cold start per container (a and b), launch to first passed /ping, in µs.
    assert setup["SampleCount"] == 2
    assert setup["Unit"] == "Microseconds"
    assert 0 < setup["Minimum"] < 240e6


def test_list_metrics_finds_every_series_of_the_endpoint(
    server: PolyhostProcess, window: dict[str, datetime]
) -> None:
    cloudwatch = server.cloudwatch()
    listed = cloudwatch.list_metrics(
        Namespace=SM, Dimensions=[{"Name": "EndpointName", "Value": ENDPOINT}]
    )
    found = {
        (
            m["MetricName"],
            next((d["Value"] for d in m["Dimensions"] if d["Name"] == "ContainerName"), None),
        )
        for m in listed["Metrics"]
    }
    for container in "ab":
        for name in (
            "Invocations",
            "Invocation4XXErrors",
            "Invocation5XXErrors",
            "ContainerLatency",
            "OverheadLatency",
        ):
            assert (name, container) in found
    assert {
        ("ModelLatency", None),
        ("InvocationsPerInstance", None),
        ("ModelSetupTime", None),
    } <= found
    resources = cloudwatch.list_metrics(Namespace="aws/sagemaker/Endpoints", RecentlyActive="PT3H")
    names = {m["MetricName"] for m in resources["Metrics"]}
    assert {
        "CPUUtilization",
        "MemoryUtilization",
        "DiskUtilization",
        "MemoryRSS",
        "ContainerUp",
    } <= names
    paginator = cloudwatch.get_paginator("list_metrics")
    assert sum(len(page["Metrics"]) for page in paginator.paginate()) >= len(listed["Metrics"])


RESOURCE_ENDPOINT = "resourceful"


@pytest.fixture(scope="module")
def resources(server: PolyhostProcess) -> Any:
    """A second endpoint, so burning and allocating leave the counted one's counts alone."""
    deploy(server.sagemaker(), RESOURCE_ENDPOINT, [busy("a"), busy("b")], mode="Direct")
    return server.runtime()


def resource_maximum(server: PolyhostProcess, name: str, container: str, since: datetime) -> float:
    answer = server.cloudwatch().get_metric_statistics(
        Namespace=RESOURCES, MetricName=name, Dimensions=dims(container, RESOURCE_ENDPOINT),
        StartTime=since, EndTime=datetime.now(UTC) + timedelta(minutes=1), Period=10,
        Statistics=["Maximum"],
    )  # fmt: skip
    return max((p["Maximum"] for p in answer["Datapoints"]), default=-1.0)


def test_cpu_rises_for_a_busy_container_and_not_for_its_idle_neighbour(
    server: PolyhostProcess, resources: Any
) -> None:
    since = datetime.now(UTC)
    invoke(
        resources,
        RESOURCE_ENDPOINT,
        b"x",
        TargetContainerHostname="a",
        CustomAttributes="burn=start",
    )
    try:
        busiest = eventually(
            lambda: resource_maximum(server, "CPUUtilization", "a", since),
            "CPUUtilization of the busy container",
            DEADLINE_S,
            POLL_S,
            until=lambda cpu: cpu >= 20.0,  # a spinning core is 100; others share this machine
        )
    finally:
        invoke(
            resources,
            RESOURCE_ENDPOINT,
            b"x",
            TargetContainerHostname="a",
            CustomAttributes="burn=stop",
        )
    idle = resource_maximum(server, "CPUUtilization", "b", since)
    assert 0.0 <= idle < 5.0 < busiest


def test_memory_shows_what_a_container_allocates(server: PolyhostProcess, resources: Any) -> None:
    since = datetime.now(UTC)
    # This server times invocations out after 1 s (for the timeout counts); touching 300 MiB
    # can take longer on a loaded machine, and the container keeps the memory either way.
    try:
        invoke(
            resources,
            RESOURCE_ENDPOINT,
            b"x",
            TargetContainerHostname="b",
            CustomAttributes="alloc=300",
        )
    except ClientError as error:
        assert "timed out" in str(error)
    eventually(
        lambda: (
            resource_maximum(server, "MemoryRSS", "b", since)
            - resource_maximum(server, "MemoryRSS", "a", since)
        ),
        "MemoryRSS of b beyond a's",
        DEADLINE_S,
        POLL_S,
        until=lambda extra: extra >= 250 * 1024 * 1024,
    )
    assert resource_maximum(server, "MemoryUtilization", "b", since) > resource_maximum(
        server, "MemoryUtilization", "a", since
    )


@pytest.mark.parametrize("protocol", ["json", "smithy-rpc-v2-cbor", "query"])
def test_every_protocol_reads_the_same(
    server: PolyhostProcess, window: dict[str, datetime], protocol: str, tmp_path: Path
) -> None:
    reference = server.cloudwatch()
    client = server.cloudwatch(protocol, tmp_path)
    request = {
        "Namespace": SM, "MetricName": "ContainerLatency", "Dimensions": dims("a"),
        "StartTime": window["start"], "EndTime": window["end"], "Period": 60,
    }  # fmt: skip
    for statistics in (
        {"Statistics": ["Sum", "SampleCount", "Maximum"]},
        {"ExtendedStatistics": ["p99.9"]},
    ):
        expected = reference.get_metric_statistics(**request, **statistics)
        got = client.get_metric_statistics(**request, **statistics)
        assert got["Datapoints"] == expected["Datapoints"] != []
        assert got["Label"] == "ContainerLatency"
    query = {
        "Id": "calls",
        "Label": "calls of a",
        "MetricStat": {
            "Metric": {"Namespace": SM, "MetricName": "Invocations", "Dimensions": dims("a")},
            "Period": 60,
            "Stat": "Sum",
        },
    }
    data = client.get_metric_data(
        MetricDataQueries=[query], StartTime=window["start"], EndTime=window["end"]
    )
    (result,) = data["MetricDataResults"]
    assert (result["Id"], result["Label"], sum(result["Values"])) == ("calls", "calls of a", 12.0)
    assert len(result["Timestamps"]) == len(result["Values"])
    listed = client.list_metrics(
        Namespace=SM,
        MetricName="Invocations",
        Dimensions=[
            {"Name": "ContainerName", "Value": "b"},
            {"Name": "EndpointName", "Value": ENDPOINT},
        ],
    )
    assert [m["MetricName"] for m in listed["Metrics"]] == ["Invocations"]
    with pytest.raises(client.exceptions.InvalidParameterValueException) as caught:
        client.get_metric_statistics(**{**request, "Period": 45}, Statistics=["Sum"])
    error = caught.value.response
    assert error["Error"]["Code"] == "InvalidParameterValue"
    assert "multiple of 60" in error["Error"]["Message"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["ResponseMetadata"]["RequestId"]
    with pytest.raises(client.exceptions.InvalidParameterCombinationException):
        client.get_metric_statistics(
            **{**request, "StartTime": window["end"] - timedelta(days=3)}, Statistics=["Sum"]
        )
    with pytest.raises(ClientError) as unknown:
        client.put_metric_data(Namespace="x", MetricData=[{"MetricName": "m", "Value": 1.0}])
    assert (
        "ListMetrics, GetMetricStatistics, GetMetricData"
        in unknown.value.response["Error"]["Message"]
    )


def aws(server: PolyhostProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_PAGER": "",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    return subprocess.run(
        [str(AWS), "cloudwatch", *args, "--endpoint-url", server.url, "--output", "json"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_the_aws_cli_reads_statistics(server: PolyhostProcess, window: dict[str, datetime]) -> None:
    dimensions = [f"Name={d['Name']},Value={d['Value']}" for d in dims("a")]
    common = [
        "get-metric-statistics", "--namespace", SM, "--metric-name", "Invocations",
        "--dimensions", *dimensions, "--start-time", window["start"].isoformat(),
        "--end-time", window["end"].isoformat(), "--statistics", "Sum",
    ]  # fmt: skip
    done = aws(server, *common, "--period", "60")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["Label"] == "Invocations"
    assert sum(p["Sum"] for p in answer["Datapoints"]) == 12
    refused = aws(server, *common, "--period", "45")
    assert refused.returncode != 0
    assert "InvalidParameterValue" in refused.stderr and "multiple of 60" in refused.stderr
