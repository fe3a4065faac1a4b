"""Fuzz CloudWatch Logs' four read operations against a real server with real container logs.

Requests follow botocore's `logs` model (members, enums, ranges), with names and tokens drawn
from pools that meet the live endpoint's group and streams, then broken the ways a hostile
client would: wrong types, strings past their maximum or holding control characters and lone
surrogates, tokens forged or cut, filter patterns with stray quotes, bodies cut short.

The properties: never a 5xx, every error in the AWS JSON shape with a message, a 200 answer that
is the operation's shape; afterwards the server still answers and logged no traceback. Examples
are bounded so the file runs in well under a minute.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.model import Shape
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.reliability.hostile_client import ping, send_and_read
from tests.support.endpoints import deploy, echo_container, invoke
from tests.support.server import PolyhostProcess

LOGS = botocore.session.get_session().get_service_model("logs")
OPERATIONS = ["DescribeLogGroups", "DescribeLogStreams", "GetLogEvents", "FilterLogEvents"]
ENDPOINT = "fz-logs"
GROUP = f"/aws/sagemaker/Endpoints/{ENDPOINT}"
ARN = f"arn:aws:logs:us-east-1:123456789012:log-group:{GROUP}"
STREAMS = ["AllTraffic/i-0/a", "AllTraffic/i-0/b"]
ANSWER_MEMBER = {
    "DescribeLogGroups": "logGroups",
    "DescribeLogStreams": "logStreams",
    "GetLogEvents": "events",
    "FilterLogEvents": "events",
}

ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=4),
    st.just("\ud800"),
)
LEAF = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | ODD_TEXT
WRONG = st.one_of(LEAF, st.lists(LEAF, max_size=3), st.dictionaries(st.text(max_size=3), LEAF))


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def token(prefix: str, payload: dict[str, object]) -> str:
    """A token of the shape the server issues (`polyhost.tokens`): prefix, unpadded base64url
    of a versioned JSON object; the payload drawn to hit both valid and forged values."""
    raw = json.dumps({"v": 1, **payload}, separators=(",", ":"))
    return prefix + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


POSITIONS = st.integers(-5, 10**25) | LEAF
TOKENS = st.one_of(
    st.builds(lambda d, n: token(f"{d}/", {"p": n}), st.sampled_from("fb"), POSITIONS),
    st.builds(lambda n: token("s/", {"i": n}), POSITIONS),
    st.builds(lambda name: token("g/", {"g": name}), st.sampled_from([GROUP, "", "/aws", "\x00"])),
    st.builds(
        lambda cursors: token("p/", {"c": cursors}),
        st.dictionaries(st.sampled_from([*STREAMS, "x"]), st.integers(-3, 10**20) | LEAF),
    ),
    # The old shapes, and forged ones: refused as invalid tokens, never a 500.
    st.builds(lambda d, n: f"{d}/{n}", st.sampled_from("fbsgp"), st.integers(-5, 10**25)),
    st.builds(lambda name: "g/" + b64(name), st.sampled_from([GROUP, "", "/aws", "\x00"])),
    st.sampled_from(["p/", "g/", "s/", "f/", "p/e30=", "p/bnVsbA==", "g/%%%"]),
    st.builds(lambda d: token(f"{d}/", {"v": 2}), st.sampled_from("fbsgp")),
    st.text(max_size=30),
)
PATTERNS = st.one_of(
    st.lists(
        st.sampled_from(
            ["hello", "-hello", "?line", '"a phrase"', '-"x y"', "?", "-", '"', "{", "["]
        ),
        max_size=5,
    ).map(" ".join),
    st.text(max_size=60),
    st.just("x" * 1025),
)
SPECIAL: dict[str, st.SearchStrategy[Any]] = {
    "logGroupName": st.sampled_from([GROUP, GROUP + "x", "/aws/sagemaker/Endpoints/", "/x"]),
    "logGroupIdentifier": st.sampled_from([GROUP, ARN, ARN + ":*", "arn:aws:logs:x", "arn:"]),
    "logGroupNamePrefix": st.sampled_from(["/aws", "/aws/sagemaker/Endpoints/fz", "nope"]),
    "logStreamName": st.sampled_from([*STREAMS, "AllTraffic/i-9/z", "a:b"]),
    "logStreamNamePrefix": st.sampled_from(["AllTraffic", "AllTraffic/i-0/b", "z"]),
    "logStreamNames": st.lists(st.sampled_from([*STREAMS, "nope"]), min_size=1, max_size=3),
    "nextToken": TOKENS,
    "filterPattern": PATTERNS,
    "startTime": st.integers(0, 2**63 - 1) | st.sampled_from([0, 1, 10**12, 10**13]),
    "endTime": st.integers(0, 2**63 - 1) | st.sampled_from([0, 1, 10**12, 10**13]),
    "limit": st.integers(-2, 10_002),
}


def valid(shape: Shape, member: str) -> st.SearchStrategy[Any]:
    if member in SPECIAL:
        return SPECIAL[member]
    kind = shape.type_name
    if kind == "string":
        enum: list[str] = shape.enum  # type: ignore[attr-defined]
        return st.sampled_from(enum) if enum else st.text(max_size=20)
    if kind in ("integer", "long"):
        return st.integers(-1, 100)
    if kind == "boolean":
        return st.booleans()
    if kind == "list":
        return st.lists(st.text(max_size=10), max_size=3)
    return LEAF


def member_value(shape: Shape, member: str) -> st.SearchStrategy[Any]:
    return st.one_of(valid(shape, member), valid(shape, member), valid(shape, member), WRONG)


def body_for(operation: str) -> st.SearchStrategy[bytes]:
    shape = LOGS.operation_model(operation).input_shape
    assert shape is not None
    members: dict[str, Shape] = shape.members
    params = st.fixed_dictionaries(
        {}, optional={name: member_value(member, name) for name, member in members.items()}
    )
    # Near valid: the group (and stream) named as clients do, other members as the model says,
    # so that requests get past the checks and read the live logs.
    core = {"logGroupName": st.sampled_from([GROUP, GROUP, "/aws/sagemaker/Endpoints/zz"])}
    if "logStreamName" in members:
        core["logStreamName"] = st.sampled_from([*STREAMS, "AllTraffic/i-9/z"])
    limit = members.get("limit")
    high = int(limit.metadata["max"]) if limit is not None else 1
    sensible: dict[str, st.SearchStrategy[Any]] = {
        "limit": st.integers(1, high),
        "startTime": st.sampled_from([0, 10**12, 4 * 10**12]),
        "endTime": st.sampled_from([10**12, 4 * 10**12]),
        "filterPattern": st.sampled_from(["", "hello", '"a phrase" -b:', "?line ?zzz", "-a:"]),
        "logStreamNames": st.lists(st.sampled_from(STREAMS), min_size=1, max_size=2),
        "startFromHead": st.booleans(),
        "descending": st.booleans(),
        "orderBy": st.sampled_from(["LogStreamName", "LastEventTime"]),
    }
    near = st.fixed_dictionaries(
        core, optional={name: sensible[name] for name in members if name in sensible}
    )
    encoded = st.one_of(near, near, params).map(
        lambda p: json.dumps(p, allow_nan=True).encode("utf-8", "surrogatepass")
    )
    cut = encoded.flatmap(lambda raw: st.integers(0, len(raw)).map(lambda n: raw[:n]))
    return st.one_of(encoded, encoded, encoded, cut, st.binary(max_size=64))


REQUESTS = st.one_of(
    *[st.tuples(st.just(operation), body_for(operation)) for operation in OPERATIONS],
    st.tuples(st.sampled_from(["PutLogEvents", "", "GetLogEvents\x7f"]), st.binary(max_size=32)),
)


def logs_request(operation: str, body: bytes) -> bytes:
    head = (
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.1\r\n"
        f"X-Amz-Target: Logs_20140328.{operation}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("utf-8", "surrogateescape") + body


@pytest.fixture(scope="module")
def live(server: PolyhostProcess, sagemaker: Any) -> Iterator[str]:
    containers = [echo_container("a"), echo_container("b")]
    assert deploy(sagemaker, ENDPOINT, containers, mode="Direct")["EndpointStatus"] == "InService"
    runtime = server.runtime()
    for number in range(20):
        invoke(
            runtime, ENDPOINT, b"x", TargetContainerHostname="ab"[number % 2],
            CustomAttributes=f"say=hello line {number} a phrase",
        )  # fmt: skip
    yield ENDPOINT


@settings(
    max_examples=600,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=REQUESTS)
def test_fuzz_logs_api(server: PolyhostProcess, live: str, request: tuple[str, bytes]) -> None:
    operation, body = request
    answer = send_and_read(server.port, logs_request(operation, body))
    assert answer.status is not None, answer.raw[:300]
    assert answer.status < 500, answer.body[:500]
    decoded = json.loads(answer.body)
    assert isinstance(decoded, dict)
    event(f"{operation[:20]!r}: {answer.status} {decoded.get('__type', '')}")  # statistics
    if answer.status >= 400:
        assert answer.status == 400, decoded
        assert decoded.get("__type") and isinstance(decoded.get("message"), str), decoded
        assert decoded["message"], decoded
    else:
        assert isinstance(decoded[ANSWER_MEMBER[operation]], list), decoded


def test_the_server_still_answers_and_logged_no_traceback(
    server: PolyhostProcess, live: str
) -> None:
    assert ping(server.port) == 200
    body = json.dumps({"logGroupName": GROUP, "filterPattern": "hello"}).encode()
    answer = send_and_read(server.port, logs_request("FilterLogEvents", body))
    assert answer.status == 200, answer.body[:300]
    assert len(json.loads(answer.body)["events"]) == 20
    assert "Traceback" not in server.log()
