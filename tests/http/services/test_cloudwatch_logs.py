"""CloudWatch Logs' read API on the main port, through boto3's `logs` client, on a real server.

The server rotates container logs at 1 KiB (the smallest size it allows), so every read here
spans rotated files. Containers print lines on request (the echo container's `say=` attribute).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support import waiting
from tests.support.endpoints import deploy, echo_container, invoke
from tests.support.server import REGION, PolyhostProcess, ServerFactory, write_image_config

ENDPOINT = "cwl-echo"
GROUP = f"/aws/sagemaker/Endpoints/{ENDPOINT}"
ALPHA = "AllTraffic/i-0/alpha"
BETA = "AllTraffic/i-0/beta"
T = TypeVar("T")


@pytest.fixture(scope="module")
def server(start_server: ServerFactory) -> PolyhostProcess:
    return start_server("--log-max-bytes", "1024", "--log-backups", "200", name="cwlogs")


def logs_client(server: PolyhostProcess, validate: bool = True) -> Any:
    return boto3.client(
        "logs",
        endpoint_url=server.url,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}, parameter_validation=validate),
    )


@pytest.fixture(scope="module")
def logs(server: PolyhostProcess) -> Any:
    return logs_client(server)


@pytest.fixture(scope="module")
def endpoint(server: PolyhostProcess) -> str:
    description = deploy(
        server.sagemaker(), ENDPOINT, [echo_container("alpha"), echo_container("beta")], "Direct"
    )
    assert description["EndpointStatus"] == "InService", description
    return ENDPOINT


def say(server: PolyhostProcess, hostname: str, *texts: str) -> None:
    runtime = server.runtime()
    for text in texts:
        invoke(
            runtime,
            ENDPOINT,
            b"x",
            TargetContainerHostname=hostname,
            CustomAttributes=f"say={text}",
        )


def eventually(read: Callable[[], T], done: Callable[[T], bool], what: str) -> T:
    """Read until `done` (the log pump writes on its own thread); the deadline only stops a hang."""
    return waiting.eventually(read, what, timeout=60, interval=0.05, until=done)


def all_forward(logs: Any, stream: str, limit: int) -> list[dict[str, Any]]:
    """Every event of `stream` from its head, following nextForwardToken until it repeats."""
    events: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"startFromHead": True}
    while True:
        page = logs.get_log_events(logGroupName=GROUP, logStreamName=stream, limit=limit, **kwargs)
        assert len(page["events"]) <= limit
        events += page["events"]
        if kwargs.get("nextToken") == page["nextForwardToken"]:
            return events
        kwargs = {"nextToken": page["nextForwardToken"]}


def ours(events: list[dict[str, Any]], tag: str) -> list[str]:
    return [e["message"] for e in events if tag in e["message"]]


def test_groups_and_streams_are_listed(logs: Any, endpoint: str) -> None:
    groups = logs.describe_log_groups(logGroupNamePrefix="/aws/sagemaker/Endpoints/cwl-")
    (group,) = groups["logGroups"]
    assert group["logGroupName"] == GROUP
    assert group["logGroupArn"] == f"arn:aws:logs:us-east-1:123456789012:log-group:{GROUP}"
    assert group["arn"] == group["logGroupArn"] + ":*"
    assert (
        logs.describe_log_groups(logGroupNamePrefix="/aws/sagemaker/Endpoints/nope")["logGroups"]
        == []
    )
    streams = logs.describe_log_streams(logGroupName=GROUP)["logStreams"]
    assert [s["logStreamName"] for s in streams] == [ALPHA, BETA]
    assert streams[0]["arn"] == f"{group['logGroupArn']}:log-stream:{ALPHA}"
    first = logs.describe_log_streams(logGroupName=GROUP, limit=1)
    rest = logs.describe_log_streams(logGroupName=GROUP, limit=1, nextToken=first["nextToken"])
    assert [s["logStreamName"] for s in first["logStreams"] + rest["logStreams"]] == [ALPHA, BETA]
    assert "nextToken" not in rest
    by_prefix = logs.describe_log_streams(
        logGroupIdentifier=group["logGroupArn"], logStreamNamePrefix="AllTraffic/i-0/b"
    )
    assert [s["logStreamName"] for s in by_prefix["logStreams"]] == [BETA]
    paginated = logs.get_paginator("describe_log_groups").paginate(PaginationConfig={"PageSize": 1})
    assert GROUP in [g["logGroupName"] for page in paginated for g in page["logGroups"]]


def test_lines_read_back_forward_and_backward_across_rotations(
    server: PolyhostProcess, logs: Any, endpoint: str
) -> None:
    tag = "page-test"
    lines = [f"{tag}-{n:03d} " + "." * 40 for n in range(60)]  # ~3.5 KiB: several rotations
    before = int(time.time() * 1000) - 1
    say(server, "alpha", *lines)
    expected = [f"alpha: {line}" for line in lines]
    events = eventually(
        lambda: all_forward(logs, ALPHA, limit=7),
        lambda got: ours(got, tag) == expected,
        "every line, paging forward",
    )
    assert all(e["timestamp"] >= before for e in events if tag in e["message"])
    timestamps = [e["timestamp"] for e in events]
    assert timestamps == sorted(timestamps)
    folder = next((server.state_dir / "containers" / ENDPOINT).glob("r*/AllTraffic/i-0/alpha"))
    assert (folder / "container.log.3").exists()  # the lines span rotated files

    backward: list[dict[str, Any]] = []
    page = logs.get_log_events(logGroupName=GROUP, logStreamName=ALPHA, limit=5)
    while True:
        backward = page["events"] + backward
        token = page["nextBackwardToken"]
        page = logs.get_log_events(
            logGroupName=GROUP, logStreamName=ALPHA, limit=5, nextToken=token
        )
        if page["nextBackwardToken"] == token:
            break
    assert ours(backward, tag) == expected
    assert [e["message"] for e in backward] == [e["message"] for e in events]

    newest = logs.get_log_events(logGroupName=GROUP, logStreamName=ALPHA, limit=2)
    assert [e["message"] for e in newest["events"]] == expected[-2:]
    window = logs.get_log_events(
        logGroupName=GROUP, logStreamName=ALPHA, startFromHead=True,
        startTime=events[-1]["timestamp"], endTime=events[-1]["timestamp"] + 1,
    )  # fmt: skip
    assert window["events"] and all(
        e["timestamp"] == events[-1]["timestamp"] for e in window["events"]
    )


def test_filter_finds_lines_across_streams(
    server: PolyhostProcess, logs: Any, endpoint: str
) -> None:
    say(server, "alpha", "filter-test ERROR disk full", "filter-test INFO all good")
    say(server, "beta", "filter-test ERROR timeout in handler", "filter-test DEBUG ERROR noise")
    found = eventually(
        lambda: logs.filter_log_events(
            logGroupName=GROUP, filterPattern="filter-test ERROR -DEBUG"
        )["events"],
        lambda events: len(events) == 2,
        "both ERROR lines",
    )
    assert sorted((e["logStreamName"], e["message"]) for e in found) == [
        (ALPHA, "alpha: filter-test ERROR disk full"),
        (BETA, "beta: filter-test ERROR timeout in handler"),
    ]
    assert len({e["eventId"] for e in found}) == 2
    phrase = logs.filter_log_events(
        logGroupName=GROUP, logStreamNames=[BETA], filterPattern='"timeout in handler"'
    )
    assert [e["message"] for e in phrase["events"]] == [
        "beta: filter-test ERROR timeout in handler"
    ]
    assert phrase["searchedLogStreams"] == [{"logStreamName": BETA, "searchedCompletely": True}]
    either = logs.filter_log_events(
        logGroupName=GROUP, logStreamNamePrefix="AllTraffic/i-0/a", filterPattern="?INFO ?DEBUG"
    )
    assert [e["message"] for e in either["events"]] == ["alpha: filter-test INFO all good"]
    # Paged two at a time, the four lines come back once each.
    pages = logs.get_paginator("filter_log_events").paginate(
        logGroupName=GROUP, filterPattern="filter-test", PaginationConfig={"PageSize": 1}
    )
    messages = [e["message"] for page in pages for e in page["events"]]
    assert sorted(messages) == sorted(
        [
            "alpha: filter-test ERROR disk full",
            "alpha: filter-test INFO all good",
            "beta: filter-test ERROR timeout in handler",
            "beta: filter-test DEBUG ERROR noise",
        ]
    )


def test_a_model_errors_log_stream_arn_leads_to_the_failing_requests_line(
    server: PolyhostProcess, logs: Any, endpoint: str
) -> None:
    runtime = server.runtime()
    with pytest.raises(ClientError) as raised:
        invoke(
            runtime, ENDPOINT, b"boom", TargetContainerHostname="beta",
            CustomAttributes="say=request-7f3a failed: bad input,status=500",
        )  # fmt: skip
    error: dict[str, Any] = dict(raised.value.response)
    assert error["Error"]["Code"] == "ModelError"
    arn = error["LogStreamArn"]
    found = eventually(
        lambda: logs.filter_log_events(logGroupIdentifier=arn, filterPattern='"request-7f3a"')[
            "events"
        ],
        lambda events: len(events) == 1,
        "the failing request's line",
    )
    assert found[0]["logStreamName"] == BETA
    assert found[0]["message"] == "beta: request-7f3a failed: bad input"
    stream = logs.get_log_events(logGroupIdentifier=arn, logStreamName=BETA, limit=10)
    assert found[0]["message"] in [e["message"] for e in stream["events"]]


BAD_INPUTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("get_log_events", {"logGroupName": "/aws/sagemaker/Endpoints/none", "logStreamName": ALPHA},
     "ResourceNotFoundException", "log group does not exist"),
    ("get_log_events", {"logGroupName": GROUP, "logStreamName": "AllTraffic/i-9/zeta"},
     "ResourceNotFoundException", "its streams are"),
    ("get_log_events", {"logGroupName": GROUP, "logStreamName": ALPHA, "nextToken": "f/xyz"},
     "InvalidParameterException", "nextToken is invalid"),
    ("get_log_events", {"logGroupName": GROUP, "logStreamName": ALPHA, "limit": 0},
     "InvalidParameterException", "limit must be between 1 and 10000"),
    ("get_log_events", {"logGroupName": GROUP, "logStreamName": ALPHA, "limit": 10001},
     "InvalidParameterException", "limit must be between 1 and 10000"),
    ("get_log_events", {"logStreamName": ALPHA},
     "InvalidParameterException", "logGroupName or logGroupIdentifier is required"),
    ("get_log_events", {"logGroupName": GROUP, "logGroupIdentifier": GROUP, "logStreamName": ALPHA},
     "InvalidParameterException", "not both"),
    ("get_log_events",
     {"logGroupName": GROUP, "logStreamName": ALPHA, "startTime": 5, "endTime": 4},
     "InvalidParameterException", "endTime (4) is before startTime (5)"),
    ("get_log_events", {"logGroupName": GROUP},
     "InvalidParameterException", "logStreamName is required"),
    ("filter_log_events", {"logGroupName": GROUP, "filterPattern": "{ $.level = \"x\" }"},
     "InvalidParameterException", "JSON patterns are not supported"),
    ("filter_log_events", {"logGroupName": GROUP, "filterPattern": '"never closed'},
     "InvalidParameterException", "never closed"),
    ("filter_log_events", {"logGroupName": GROUP, "filterPattern": "x" * 1025},
     "InvalidParameterException", "0 to 1024 characters long"),
    ("filter_log_events", {"logGroupName": GROUP, "nextToken": "p/!!!"},
     "InvalidParameterException", "nextToken is invalid"),
    ("filter_log_events", {"logGroupName": GROUP, "logStreamNames": [ALPHA],
                           "logStreamNamePrefix": "A"},
     "InvalidParameterException", "not both"),
    ("filter_log_events", {"logGroupIdentifier": "arn:aws:logs:eu-west-1:1:log-group:" + GROUP},
     "ResourceNotFoundException", "A log group ARN here is"),
    ("describe_log_streams", {"logGroupName": GROUP, "orderBy": "LastEventTime",
                              "logStreamNamePrefix": "All"},
     "InvalidParameterException", "Cannot order by LastEventTime"),
    ("describe_log_streams", {"logGroupName": GROUP, "orderBy": "Size"},
     "InvalidParameterException", "orderBy must be one of LogStreamName, LastEventTime"),
    ("describe_log_streams", {"logGroupName": GROUP, "nextToken": "s/x"},
     "InvalidParameterException", "nextToken is invalid"),
    ("describe_log_groups", {"limit": 51},
     "InvalidParameterException", "limit must be between 1 and 50"),
    ("describe_log_groups", {"logGroupNamePrefix": "bad name!"},
     "InvalidParameterException", "does not match the pattern"),
    ("describe_log_groups", {"nextToken": "g/%%%"},
     "InvalidParameterException", "nextToken is invalid"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("operation", "kwargs", "code", "fragment"),
    BAD_INPUTS,
    ids=[f"{b[0]}-{b[3]}" for b in BAD_INPUTS],
)
def test_bad_input_gets_cloudwatch_logs_error_and_400(
    server: PolyhostProcess,
    endpoint: str,
    operation: str,
    kwargs: dict[str, Any],
    code: str,
    fragment: str,
) -> None:
    client = logs_client(server, validate=False)  # as a client that checks nothing would send
    with pytest.raises(ClientError) as raised:
        getattr(client, operation)(**kwargs)
    response = raised.value.response
    assert response["Error"]["Code"] == code
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert fragment in response["Error"]["Message"]


def raw(server: PolyhostProcess, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        server.url + "/",
        data=body,
        method="POST",
        headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize(
    ("target", "body", "code"),
    [
        ("Logs_20140328.PutLogEvents", b"{}", "UnknownOperationException"),
        ("Logs_20140328.", b"{}", "UnknownOperationException"),
        ("Logs_20140328.GetLogEvents", b"{not json", "SerializationException"),
        ("Logs_20140328.GetLogEvents", b"[1, 2]", "SerializationException"),
        ("Logs_20140328.GetLogEvents", b"[" * 5000, "SerializationException"),
        ("Logs_20140328.DescribeLogGroups", b'{"limit": "ten"}', "InvalidParameterException"),
        ("Logs_20140328.DescribeLogGroups", b'{"limit": true}', "InvalidParameterException"),
    ],
)
def test_malformed_requests_are_refused_in_the_json_shape(
    server: PolyhostProcess, target: str, body: bytes, code: str
) -> None:
    status, answer = raw(server, target, body)
    assert (status, answer["__type"]) == (400, code)
    assert answer["message"]


def test_the_control_plane_still_answers_on_the_same_route(
    server: PolyhostProcess, endpoint: str
) -> None:
    described = server.sagemaker().describe_endpoint(EndpointName=ENDPOINT)
    assert described["EndpointStatus"] == "InService"


def test_no_group_before_any_endpoint_has_containers(tmp_path: Path) -> None:
    proc = PolyhostProcess(state_dir=tmp_path / "state").start()
    try:
        assert logs_client(proc).describe_log_groups()["logGroups"] == []
    finally:
        proc.stop()


def test_a_deleted_endpoints_logs_stay_readable_until_retention_ends(tmp_path: Path) -> None:
    """As CloudWatch keeps a log group after DeleteEndpoint, polyhost keeps it for
    --log-retention, across a restart too; after that the janitor removes it."""
    proc = PolyhostProcess(
        state_dir=tmp_path / "state",
        image_config=write_image_config(tmp_path / "images.toml"),
        extra_args=["--log-retention", "6"],
    ).start()
    try:
        sagemaker = proc.sagemaker()
        deploy(sagemaker, "gone", [echo_container("solo")], "Direct")
        invoke(
            proc.runtime(),
            "gone",
            b"x",
            TargetContainerHostname="solo",
            CustomAttributes="say=last-words",
        )
        sagemaker.delete_endpoint(EndpointName="gone")
        group = "/aws/sagemaker/Endpoints/gone"
        client = logs_client(proc)
        events = eventually(
            lambda: client.filter_log_events(logGroupName=group, filterPattern='"last-words"'),
            lambda answer: bool(answer["events"]),
            "the deleted endpoint's log line",
        )
        assert events["events"][0]["logStreamName"] == "AllTraffic/i-0/solo"
        names = [g["logGroupName"] for g in client.describe_log_groups()["logGroups"]]
        assert group in names
        proc.stop()
        proc.start()  # a restarted server still lists it: it reads what is on disk
        client = logs_client(proc)
        streams = client.describe_log_streams(logGroupName=group)["logStreams"]
        assert [s["logStreamName"] for s in streams] == ["AllTraffic/i-0/solo"]
        eventually(
            lambda: client.describe_log_groups()["logGroups"],
            lambda listed: group not in [g["logGroupName"] for g in listed],
            "the janitor removing the log group after --log-retention",
        )
    finally:
        proc.stop()


@pytest.mark.parametrize(
    "token",
    [
        "p/" + base64.urlsafe_b64encode(b"[" * 5000).decode(),
        "p/" + base64.urlsafe_b64encode(b'{"v":1,"c":' + b"{" * 5000).decode(),
        "p/" + base64.urlsafe_b64encode(b'{"v":1,"c":{"a":NaN}}').decode(),
        "p/" + "A" * 70_000,
    ],
    ids=["deep list", "deep object", "NaN", "long"],
)
def test_a_tampered_filter_token_is_refused_not_a_failure(
    server: PolyhostProcess, endpoint: str, token: str
) -> None:
    body = json.dumps({"logGroupName": GROUP, "nextToken": token}).encode()
    status, answer = raw(server, "Logs_20140328.FilterLogEvents", body)
    assert (status, answer["__type"]) == (400, "InvalidParameterException")
    assert "nextToken is invalid" in answer["message"]
