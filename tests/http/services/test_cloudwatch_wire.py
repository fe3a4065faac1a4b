"""Malformed CloudWatch requests, sent raw: each gets CloudWatch's code, a 4xx and a message
that says what to fix, in the shape of the protocol it came in; never a 500."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import cbor2
import pytest

from polyhost.errors import ServiceError
from polyhost.http.services.cloudwatch import cloudwatch_error
from tests.support.server import PolyhostProcess

TARGET = "GraniteServiceVersion20100801"
CBOR_PATH = f"/service/{TARGET}/operation/"
NS = "{http://monitoring.amazonaws.com/doc/2010-08-01/}"
GOOD = {
    "Namespace": "AWS/SageMaker",
    "MetricName": "Invocations",
    "StartTime": 1_700_000_000,
    "EndTime": 1_700_003_600,
    "Period": 60,
    "Statistics": ["Sum"],
}


def post(
    server: PolyhostProcess,
    path: str,
    body: bytes,
    headers: dict[str, str],
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def as_json(
    server: PolyhostProcess, operation: str, body: bytes
) -> tuple[int, dict[str, str], Any]:
    status, headers, raw = post(
        server, "/", body,
        {"X-Amz-Target": f"{TARGET}.{operation}", "Content-Type": "application/x-amz-json-1.0"},
    )  # fmt: skip
    assert headers["content-type"] == "application/x-amz-json-1.0"
    assert headers["x-amzn-requestid"]
    return status, headers, json.loads(raw)


def as_cbor(
    server: PolyhostProcess, operation: str, body: bytes, method: str = "POST"
) -> tuple[int, dict[str, str], Any]:
    status, headers, raw = post(
        server, CBOR_PATH + operation, body,
        {"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor"},
        method,
    )  # fmt: skip
    assert headers["content-type"] == "application/cbor"
    assert headers["smithy-protocol"] == "rpc-v2-cbor"
    return status, headers, cbor2.loads(raw)


def as_query(
    server: PolyhostProcess, fields: list[tuple[str, str]]
) -> tuple[int, ElementTree.Element]:
    status, headers, raw = post(
        server, "/", urlencode(fields).encode(),
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )  # fmt: skip
    assert headers["content-type"] == "text/xml"
    return status, ElementTree.fromstring(raw)


def query_error(root: ElementTree.Element) -> tuple[str, str, str]:
    error = root.find(f"{NS}Error")
    assert error is not None and root.find(f"{NS}RequestId") is not None
    return tuple(error.findtext(f"{NS}{tag}") or "" for tag in ("Type", "Code", "Message"))  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("body", "code", "shape", "words"),
    [
        (b"{", "SerializationException", "SerializationException", "not valid JSON"),
        (b"[1]", "SerializationException", "SerializationException", "JSON object"),
        (b"[" * 100_000, "SerializationException", "SerializationException", "not valid JSON"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "StartTime"}).encode(),
         "MissingParameter", "MissingRequiredParameterException",
         "The parameter StartTime is required."),
        (json.dumps({**GOOD, "Period": "60"}).encode(), "InvalidParameterValue",
         "InvalidParameterValueException", "Period must be a number"),
        (json.dumps({**GOOD, "Period": 2**40}).encode(), "InvalidParameterValue",
         "InvalidParameterValueException", "Period must be between 1 and 2147483647"),
        (json.dumps({**GOOD, "StartTime": 1e20}).encode(), "InvalidParameterValue",
         "InvalidParameterValueException", "between 1970 and 9999"),
        (json.dumps({**GOOD, "Statistics": ["Mean"]}).encode(), "InvalidParameterValue",
         "InvalidParameterValueException", "Statistics.member.1 is not valid: it must be one of"),
        (json.dumps({**GOOD, "Namespace": "x" * 256}).encode(), "InvalidParameterValue",
         "InvalidParameterValueException", "Namespace must have at most 255 characters"),
        (json.dumps({**GOOD, "Dimensions": [{"Name": "a"}]}).encode(), "MissingParameter",
         "MissingRequiredParameterException", "Dimensions.member.1.Value is required"),
    ],
)  # fmt: skip
def test_json_errors(
    server: PolyhostProcess, body: bytes, code: str, shape: str, words: str
) -> None:
    status, headers, document = as_json(server, "GetMetricStatistics", body)
    assert status == 400
    assert document["__type"].endswith(f"#{shape}") or document["__type"] == code
    assert headers["x-amzn-query-error"] == f"{code};Sender"
    assert words in document["message"]


def test_json_unknown_operation(server: PolyhostProcess) -> None:
    status, _, document = as_json(server, "PutDashboard", b"{}")
    assert status == 400 and document["__type"] == "UnknownOperationException"
    assert "polyhost serves CloudWatch's ListMetrics" in document["message"]


def test_cbor_errors(server: PolyhostProcess) -> None:
    status, headers, document = as_cbor(server, "GetMetricStatistics", b"\xff\x00garbage")
    assert status == 400 and document["__type"] == "SerializationException"
    assert "not valid CBOR" in document["message"]
    status, _, document = as_cbor(server, "GetMetricStatistics", cbor2.dumps([1, 2]))
    assert status == 400 and "CBOR map" in document["message"]
    # a shared reference (tag 29) would let a tiny body expand when walked: not decoded at all
    shared = b"\xa1\x6aStatistics\xd8\x1c\x82\x63Sum\xd8\x1d\x00"
    status, _, document = as_cbor(server, "GetMetricStatistics", shared)
    assert status == 400 and document["__type"].endswith("Exception")
    status, headers, document = as_cbor(
        server, "GetMetricStatistics", cbor2.dumps({**GOOD, "Period": 45})
    )
    assert status == 400
    assert document["__type"] == "com.amazonaws.cloudwatch#InvalidParameterValueException"
    assert headers["x-amzn-query-error"] == "InvalidParameterValue;Sender"
    status, _, document = as_cbor(server, "Nope", b"")
    assert status == 400 and document["__type"] == "UnknownOperationException"
    status, headers, document = as_cbor(server, "ListMetrics", b"", method="GET")
    assert status == 405 and headers["allow"] == "POST"


def test_cbor_answers_carry_tag_1_timestamps(server: PolyhostProcess) -> None:
    status, _, document = as_cbor(server, "ListMetrics", cbor2.dumps({}))
    assert status == 200 and document == {"Metrics": []}
    status, _, document = as_cbor(server, "GetMetricStatistics", cbor2.dumps(GOOD))
    assert status == 200 and document == {"Label": "Invocations", "Datapoints": []}


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ([("Action", "Nope"), ("Version", "2010-08-01")], "InvalidAction",
         "Unknown CloudWatch operation Nope"),
        ([("Version", "2010-08-01")], "InvalidAction", "names no Action"),
        ([("Action", "ListMetrics"), ("Version", "2009-01-01")], "InvalidParameterValue",
         "2010-08-01"),
        ([("Action", "ListMetrics"), ("Dimensions.member.999999999.Name", "x")],
         "InvalidParameterValue", "number elements 1, 2, 3"),
        ([("Action", "ListMetrics"), ("Dimensions.member.x.Name", "x")], "InvalidParameterValue",
         "numbered x"),
        ([("Action", "GetMetricStatistics"), ("Namespace", "n"), ("MetricName", "m"),
          ("StartTime", "yesterday"), ("EndTime", "2024-01-01T00:00:00Z"), ("Period", "60"),
          ("Statistics.member.1", "Sum")], "InvalidParameterValue", "use ISO 8601"),
        ([("Action", "GetMetricStatistics"), ("Namespace", "n"), ("MetricName", "m"),
          ("StartTime", "2024-01-01T00:00:00Z"), ("EndTime", "2024-01-01T01:00:00Z"),
          ("Period", "sixty"), ("Statistics.member.1", "Sum")], "InvalidParameterValue",
         "Period must be a number"),
        ([("Action", "GetMetricData"), ("StartTime", "2024-01-01T00:00:00Z"),
          ("EndTime", "2024-01-01T01:00:00Z"), ("MetricDataQueries.member.1.Id", "q"),
          ("MetricDataQueries.member.1.Expression", "SUM(METRICS())")], "InvalidParameterValue",
         "metric math"),
        ([("Action", "ListMetrics"), *((f"f{i}", "x") for i in range(20_001))],
         "InvalidParameterValue", "more than 20000 parameters"),
    ],
)  # fmt: skip
def test_query_errors(
    server: PolyhostProcess, fields: list[tuple[str, str]], code: str, words: str
) -> None:
    status, root = as_query(server, fields)
    assert status == 400
    fault, got_code, message = query_error(root)
    assert (fault, got_code) == ("Sender", code)
    assert words in message


def test_query_answers_in_xml(server: PolyhostProcess) -> None:
    status, root = as_query(server, [("Action", "ListMetrics"), ("Version", "2010-08-01")])
    assert status == 200
    assert root.tag == f"{NS}ListMetricsResponse"
    assert root.find(f"{NS}ListMetricsResult") is not None
    assert root.findtext(f"{NS}ResponseMetadata/{NS}RequestId")


def test_a_body_past_the_cap_is_refused(server: PolyhostProcess) -> None:
    big = json.dumps({**GOOD, "Namespace": "x" * (2 * 1024 * 1024)}).encode()
    status, _, document = as_json(server, "GetMetricStatistics", big)
    assert status == 400 and "larger than" in document["message"]
    status, _, document = as_cbor(server, "GetMetricStatistics", big)
    assert status == 400 and "larger than" in document["message"]


class AccessDenied(ServiceError):
    code = "AccessDenied"
    status = 403


@pytest.mark.parametrize(
    ("path", "headers", "content_type"),
    [
        (CBOR_PATH + "ListMetrics", [], b"application/cbor"),
        ("/", [(b"x-amz-target", f"{TARGET}.ListMetrics".encode())], b"application/x-amz-json-1.0"),
        ("/", [(b"content-type", b"application/x-www-form-urlencoded")], b"text/xml"),
    ],
)
def test_a_refusal_before_the_route_speaks_the_requests_protocol(
    path: str, headers: list[tuple[bytes, bytes]], content_type: bytes
) -> None:
    status, out, body = cloudwatch_error(
        {"path": path, "headers": headers}, AccessDenied("Not allowed: cloudwatch:ListMetrics.")
    )
    found = dict(out)
    assert status == 403 and found[b"content-type"] == content_type
    if content_type == b"text/xml":
        assert query_error(ElementTree.fromstring(body)) == (
            "Sender",
            "AccessDenied",
            "Not allowed: cloudwatch:ListMetrics.",
        )
    else:
        document = cbor2.loads(body) if content_type == b"application/cbor" else json.loads(body)
        assert document == {
            "__type": "AccessDenied",
            "message": "Not allowed: cloudwatch:ListMetrics.",
        }
        assert found[b"x-amzn-query-error"] == b"AccessDenied;Sender"
