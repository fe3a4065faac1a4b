"""Fuzz CloudWatch's three read operations against a real server with a real metric history.

Requests follow botocore's `cloudwatch` model (members, shapes, ranges) over the JSON 1.0 and
query protocols, with metric names and dimensions drawn from pools that meet the live
endpoint's series, then broken the ways a hostile client would: wrong types, huge or negative
periods and timestamps, forged tokens, metric-math expressions, bodies cut short, stray form
fields.

The properties: never a 5xx, and every answer a well-formed document of its protocol (a JSON
object, or XML); afterwards the server still answers. Examples are bounded so the file runs
in well under a minute.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree

import botocore.session
import pytest
from botocore.model import Shape
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.reliability.hostile_client import ping, send_and_read
from tests.support.endpoints import deploy, echo_container, invoke
from tests.support.server import PolyhostProcess

CLOUDWATCH = botocore.session.get_session().get_service_model("cloudwatch")
OPERATIONS = ["ListMetrics", "GetMetricStatistics", "GetMetricData"]
ENDPOINT = "fz-metrics"
NAMESPACES = ["AWS/SageMaker", "/aws/sagemaker/Endpoints", "aws/sagemaker/Endpoints", "Nope"]
METRICS = ["Invocations", "ContainerLatency", "CPUUtilization", "Invocation4XXErrors", "X"]
DIMENSIONS = st.lists(
    st.fixed_dictionaries(
        {
            "Name": st.sampled_from(["EndpointName", "VariantName", "ContainerName", "Other"]),
            "Value": st.sampled_from([ENDPOINT, "AllTraffic", "a", "b", ""]),
        }
    ),
    max_size=4,
)
ODD_TEXT = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=4),
    st.just("\ud800"),
)
LEAF = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | ODD_TEXT
WRONG = st.one_of(LEAF, st.lists(LEAF, max_size=3), st.dictionaries(st.text(max_size=3), LEAF))
TIMES = st.one_of(
    st.integers(-(10**12), 10**12),
    st.sampled_from([0, 1_700_000_000, 2_000_000_000, 253_402_300_800, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
)
METRIC = st.fixed_dictionaries(
    {
        "Namespace": st.sampled_from(NAMESPACES),
        "MetricName": st.sampled_from(METRICS),
        "Dimensions": DIMENSIONS,
    }
)
QUERY = st.fixed_dictionaries(
    {"Id": st.sampled_from(["m1", "m2", "1bad", "", "x" * 300])},
    optional={
        "MetricStat": st.fixed_dictionaries(
            {
                "Metric": METRIC,
                "Period": st.sampled_from([1, 10, 60, 61, 300, 0, -60, 10**9]),
                "Stat": st.sampled_from(["Sum", "Average", "p99", "p99.9", "tm99", "Nope"]),
            },
            optional={"Unit": st.sampled_from(["Count", "Microseconds", "Bananas"])},
        ),
        "Expression": st.sampled_from(["SUM(METRICS())", "m1 * 2", ""]),
        "ReturnData": st.booleans(),
        "Label": st.text(max_size=10),
    },
)
SPECIAL: dict[str, st.SearchStrategy[Any]] = {
    "Namespace": st.sampled_from(NAMESPACES),
    "MetricName": st.sampled_from(METRICS),
    "Dimensions": DIMENSIONS,
    "StartTime": TIMES,
    "EndTime": TIMES,
    "Period": st.sampled_from([1, 10, 60, 61, 300, 3600, 0, -60, 10**9]),
    "Statistics": st.lists(
        st.sampled_from(["Sum", "Average", "SampleCount", "Minimum", "Maximum", "Median"]),
        max_size=6,
    ),
    "ExtendedStatistics": st.lists(st.sampled_from(["p50", "p99", "p99.9", "p0", "p101", "x"])),
    "MetricDataQueries": st.lists(QUERY, max_size=4),
    "NextToken": st.one_of(st.text(max_size=40), st.sampled_from(["", "0", "-1", "e30="])),
    "MaxDatapoints": st.integers(-1, 200_000),
    "ScanBy": st.sampled_from(["TimestampAscending", "TimestampDescending", "Sideways"]),
}


def member_value(shape: Shape, member: str) -> st.SearchStrategy[Any]:
    valid = SPECIAL.get(member, LEAF)
    return st.one_of(valid, valid, valid, WRONG)


def params_for(operation: str) -> st.SearchStrategy[dict[str, Any]]:
    shape = CLOUDWATCH.operation_model(operation).input_shape
    assert shape is not None
    members: dict[str, Shape] = shape.members
    return st.fixed_dictionaries(
        {}, optional={name: member_value(member, name) for name, member in members.items()}
    )


def json_body(params: dict[str, Any]) -> bytes:
    return json.dumps(params, allow_nan=True).encode("utf-8", "surrogatepass")


def flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    """Query-protocol form fields, the way botocore flattens lists and structures."""
    if isinstance(value, dict):
        for key, item in value.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, list):
        for index, item in enumerate(value, 1):
            flatten(f"{prefix}.member.{index}", item, out)
    else:
        out.append((prefix, str(value)))


def query_body(operation: str, params: dict[str, Any]) -> bytes:
    fields: list[tuple[str, str]] = [("Action", operation), ("Version", "2010-08-01")]
    flatten("", params, fields)
    return "&".join(f"{_quote(key)}={_quote(value)}" for key, value in fields).encode("ascii")


def _quote(text: str) -> str:
    # Lone surrogates are sent as the bytes they would be, as a broken client would send them.
    return quote(text, safe="", encoding="utf-8", errors="surrogatepass")


REQUESTS = st.one_of(
    *[
        st.tuples(st.just(op), st.sampled_from(["json", "query"]), params_for(op))
        for op in OPERATIONS
    ],
    st.tuples(
        st.sampled_from(["PutMetricData", "DeleteAlarms", ""]),
        st.sampled_from(["json", "query"]),
        st.just({}),
    ),
)


def cloudwatch_request(operation: str, wire: str, params: dict[str, Any], cut: int) -> bytes:
    if wire == "json":
        body = json_body(params)
        headers = (
            "Content-Type: application/x-amz-json-1.0\r\n"
            f"X-Amz-Target: GraniteServiceVersion20100801.{operation}\r\n"
        )
    else:
        body = query_body(operation, params)
        headers = "Content-Type: application/x-www-form-urlencoded; charset=utf-8\r\n"
    body = body[: max(0, len(body) - cut)]
    head = (
        f"POST / HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("utf-8", "surrogateescape") + body


@pytest.fixture(scope="module")
def live(server: PolyhostProcess, sagemaker: Any) -> Iterator[str]:
    containers = [echo_container("a"), echo_container("b")]
    assert deploy(sagemaker, ENDPOINT, containers, mode="Direct")["EndpointStatus"] == "InService"
    runtime = server.runtime()
    for number in range(10):
        invoke(runtime, ENDPOINT, b"x", TargetContainerHostname="ab"[number % 2])
    yield ENDPOINT


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=REQUESTS, cut=st.sampled_from([0, 0, 0, 1, 7]))
def test_fuzz_cloudwatch_api(
    server: PolyhostProcess, live: str, request: tuple[str, str, dict[str, Any]], cut: int
) -> None:
    operation, wire, params = request
    answer = send_and_read(server.port, cloudwatch_request(operation, wire, params, cut))
    assert answer.status is not None, answer.raw[:300]
    assert answer.status < 500, answer.body[:500]
    event(f"{wire} {operation[:20]!r}: {answer.status}")  # statistics
    if wire == "json":
        assert isinstance(json.loads(answer.body), dict)
    else:
        ElementTree.fromstring(answer.body)  # well-formed XML, error or answer


def test_the_server_still_answers(server: PolyhostProcess, live: str) -> None:
    assert ping(server.port) == 200
