"""An asynchronous endpoint seen from outside, on a real server whose queue uses moto's S3: its
backlog and finished requests through boto3's CloudWatch client (GetMetricStatistics and
GetMetricData), its backlog on the admin API the dashboard reads, and
InvokeEndpointWithResponseStream refused as InvokeEndpoint is.

The endpoint runs one request at a time; the first one is held by the echo container until the
test releases it, so the ones behind it are the backlog for as long as the test needs.
"""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.asyncinf.test_async_invocations import deploy_async, put_input, wait_object
from tests.support.endpoints import deploy, echo_container
from tests.support.s3 import MotoS3, s3_server  # noqa: F401  (fixture)
from tests.support.server import PolyhostProcess, ServerFactory
from tests.support.waiting import eventually

ENDPOINT = "async-watched"
SM = "AWS/SageMaker"
DEADLINE_S = 90.0
POLL_S = 0.5  # the recorder samples every 10 s


@pytest.fixture(scope="module")
def bucket(s3_server: MotoS3) -> str:  # noqa: F811
    return s3_server.new_bucket("async-metrics")


@pytest.fixture(scope="module")
def server(start_server: ServerFactory, s3_server: MotoS3) -> PolyhostProcess:  # noqa: F811
    return start_server(name="async-metrics", env=s3_server.env())


def admin_endpoints(server: PolyhostProcess) -> dict[str, Any]:
    with urllib.request.urlopen(server.admin_url + "/api/endpoints", timeout=30) as answer:
        return {e["name"]: e for e in json.loads(answer.read())["endpoints"]}


def statistics(server: PolyhostProcess, name: str, variant: bool, since: datetime) -> list[Any]:
    dims = [{"Name": "EndpointName", "Value": ENDPOINT}]
    if variant:
        dims.append({"Name": "VariantName", "Value": "AllTraffic"})
    answer = server.cloudwatch().get_metric_statistics(
        Namespace=SM,
        MetricName=name,
        Dimensions=dims,
        StartTime=since,
        EndTime=datetime.now(UTC) + timedelta(minutes=2),
        Period=60,
        Statistics=["Sum", "SampleCount", "Maximum", "Minimum"],
    )
    points: list[Any] = answer["Datapoints"]
    return points


def test_backlog_and_finished_requests_reach_cloudwatch_and_the_dashboard(
    server: PolyhostProcess,
    s3_server: MotoS3,  # noqa: F811
    bucket: str,
    tmp_path: Path,
) -> None:
    since = datetime.now(UTC) - timedelta(minutes=2)
    sagemaker, runtime = server.sagemaker(), server.runtime()
    deploy_async(sagemaker, ENDPOINT, bucket, concurrency=1)
    # Serving, nothing queued: an asynchronous endpoint shows an empty backlog, not none.
    assert admin_endpoints(server)[ENDPOINT]["backlog"] == {
        "size": 0,
        "oldest_age_s": 0.0,
        "instances": 1,
    }
    release = tmp_path / "release"
    answers = []
    for index, attributes in enumerate((f"hold={release}", "none=1", "status=500", "none=1")):
        answers.append(
            runtime.invoke_endpoint_async(
                EndpointName=ENDPOINT,
                InputLocation=put_input(s3_server, bucket, f"req-{index}".encode()),
                CustomAttributes=attributes,
            )
        )
    shown = eventually(
        lambda: admin_endpoints(server)[ENDPOINT]["backlog"],
        "the backlog of four on the admin API",
        DEADLINE_S,
        POLL_S,
        until=lambda backlog: backlog["size"] == 4 and backlog["oldest_age_s"] > 0.5,
    )
    assert shown["instances"] == 1
    eventually(
        lambda: statistics(server, "ApproximateBacklogSize", False, since),
        "ApproximateBacklogSize of 4",
        DEADLINE_S,
        POLL_S,
        until=lambda points: any(p["Maximum"] == 4.0 for p in points),
    )
    per_instance = statistics(server, "ApproximateBacklogSizePerInstance", False, since)
    assert max(p["Maximum"] for p in per_instance) == 4.0  # one instance
    oldest = statistics(server, "ApproximateAgeOfOldestRequest", False, since)
    assert max(p["Maximum"] for p in oldest) > 0.0 and oldest[0]["Unit"] == "Seconds"
    without = statistics(server, "HasBacklogWithoutCapacity", False, since)
    assert without and max(p["Maximum"] for p in without) == 0.0  # an instance serves

    release.touch()
    for answer in answers[:2] + answers[3:]:
        wait_object(s3_server, answer["OutputLocation"], timeout=60)
    wait_object(s3_server, answers[2]["FailureLocation"], timeout=60)
    processed = eventually(
        lambda: statistics(server, "InvocationsProcesssed", True, since),
        "four InvocationsProcesssed",
        DEADLINE_S,
        POLL_S,
        until=lambda points: sum(p["Sum"] for p in points) == 4.0,
    )
    assert processed[0]["Unit"] == "None"
    failures = statistics(server, "InvocationFailures", True, since)
    assert sum(p["Sum"] for p in failures) == 1.0
    assert sum(p["SampleCount"] for p in failures) == 4.0  # Average: the failure rate
    in_backlog = statistics(server, "TimeInBacklog", True, since)
    total = statistics(server, "TotalProcessingTime", True, since)
    assert sum(p["SampleCount"] for p in in_backlog) == 4.0
    assert in_backlog[0]["Unit"] == total[0]["Unit"] == "Milliseconds"
    # The last one waited behind the held one (more than the half second seen above), and
    # every request's whole time holds its time in the backlog.
    assert max(p["Maximum"] for p in in_backlog) > 500.0
    assert max(p["Maximum"] for p in total) >= max(p["Maximum"] for p in in_backlog)
    eventually(
        lambda: admin_endpoints(server)[ENDPOINT]["backlog"]["size"],
        "an empty backlog on the admin API",
        DEADLINE_S,
        POLL_S,
        until=lambda size: size == 0,
    )

    # GetMetricData reads the same series.
    data = server.cloudwatch().get_metric_data(
        MetricDataQueries=[
            {
                "Id": "processed",
                "MetricStat": {
                    "Metric": {
                        "Namespace": SM,
                        "MetricName": "InvocationsProcesssed",
                        "Dimensions": [
                            {"Name": "EndpointName", "Value": ENDPOINT},
                            {"Name": "VariantName", "Value": "AllTraffic"},
                        ],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            },
            {
                "Id": "backlog",
                "MetricStat": {
                    "Metric": {
                        "Namespace": SM,
                        "MetricName": "ApproximateBacklogSize",
                        "Dimensions": [{"Name": "EndpointName", "Value": ENDPOINT}],
                    },
                    "Period": 60,
                    "Stat": "Maximum",
                },
            },
        ],
        StartTime=since,
        EndTime=datetime.now(UTC) + timedelta(minutes=2),
    )
    results = {r["Id"]: r for r in data["MetricDataResults"]}
    assert sum(results["processed"]["Values"]) == 4.0
    assert max(results["backlog"]["Values"]) == 4.0
    listed = server.cloudwatch().list_metrics(Namespace=SM, MetricName="InvocationsProcesssed")
    assert any(
        {"Name": "EndpointName", "Value": ENDPOINT} in m["Dimensions"] for m in listed["Metrics"]
    )


def test_a_real_time_endpoint_has_no_backlog_on_the_dashboard(server: PolyhostProcess) -> None:
    deploy(server.sagemaker(), "sync-beside", [echo_container("sync-beside")])
    assert admin_endpoints(server)["sync-beside"]["backlog"] is None


def test_streaming_to_an_asynchronous_endpoint_is_a_validation_error(
    server: PolyhostProcess,
    bucket: str,
) -> None:
    deploy_async(server.sagemaker(), "async-no-stream", bucket)
    with pytest.raises(ClientError) as refused:
        server.runtime().invoke_endpoint_with_response_stream(
            EndpointName="async-no-stream", Body=b"x", ContentType="text/plain"
        )
    error = refused.value.response
    assert error["Error"]["Code"] == "ValidationError"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "InvokeEndpointAsync" in error["Error"]["Message"]
