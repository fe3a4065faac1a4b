"""The AWS JSON 1.1 adapter over real sockets: framing, errors, and a fuzz of every operation.

The fuzz test throws random and ill-typed JSON (shaped after each operation's input, or not at
all) at the server and asks only this: every answer is a 4xx with `__type` and `message` (or a
200 for a request that happens to be valid), never a 5xx, and the server keeps answering.
"""

from __future__ import annotations

import http.client
import json
import math
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.model import Shape
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyhost.control.service import OPERATIONS
from tests.support.server import PolyhostProcess

MODEL = botocore.session.get_session().get_service_model("sagemaker")


def post(
    conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    conn.request("POST", "/", body=body, headers=headers)
    answer = conn.getresponse()
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()


@pytest.fixture(scope="module")
def conn(server: PolyhostProcess) -> Iterator[http.client.HTTPConnection]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    yield connection
    connection.close()


def target(operation: str) -> dict[str, str]:
    return {
        "X-Amz-Target": f"SageMaker.{operation}",
        "Content-Type": "application/x-amz-json-1.1",
    }


# -- framing ----------------------------------------------------------------------------------


def test_success_headers(conn: http.client.HTTPConnection) -> None:
    status, headers, body = post(conn, b"{}", target("ListModels"))
    assert status == 200
    assert headers["content-type"] == "application/x-amz-json-1.1"
    first = headers["x-amzn-requestid"]
    _, headers, _ = post(conn, b"{}", target("ListModels"))
    assert headers["x-amzn-requestid"] != first
    assert isinstance(json.loads(body)["Models"], list)


def test_errors_carry_type_message_and_header(conn: http.client.HTTPConnection) -> None:
    status, headers, body = post(conn, b"{}", target("DescribeModel"))
    assert status == 400
    assert headers["x-amzn-errortype"] == "ValidationException"
    assert json.loads(body) == {
        "__type": "ValidationException",
        "message": "1 validation error detected: Value null at 'modelName' failed to satisfy "
        "constraint: Member must not be null",
    }


@pytest.mark.parametrize(
    ("headers", "body", "code", "message"),
    [
        (
            {},
            b"{}",
            "UnknownOperationException",
            "Missing or malformed X-Amz-Target header: expected 'SageMaker.<Operation>'.",
        ),
        (
            {"X-Amz-Target": "Other.CreateModel"},
            b"{}",
            "UnknownOperationException",
            "Missing or malformed X-Amz-Target header: expected 'SageMaker.<Operation>'.",
        ),
        (
            target("ListModels"),
            b"{not json",
            "SerializationException",
            "Request body is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        (
            target("ListModels"),
            b"[1, 2]",
            "SerializationException",
            "Request body must be a JSON object, not list.",
        ),
        (
            target("ListModels"),
            b"\xff\xfe\x00",
            "SerializationException",
            None,
        ),
        (
            target("ListModels"),
            b"[" * 100_000,
            "SerializationException",
            None,
        ),
    ],
    ids=["no target", "other service", "not JSON", "not an object", "not UTF-8", "deep nesting"],
)
def test_malformed_requests(
    conn: http.client.HTTPConnection,
    headers: dict[str, str],
    body: bytes,
    code: str,
    message: str | None,
) -> None:
    status, _, raw = post(conn, body, headers)
    answer = json.loads(raw)
    assert (status, answer["__type"]) == (400, code)
    if message is not None:
        assert answer["message"] == message


def test_an_empty_body_is_an_empty_request(conn: http.client.HTTPConnection) -> None:
    status, _, body = post(conn, b"", target("ListEndpoints"))
    assert status == 200
    assert isinstance(json.loads(body)["Endpoints"], list)


def test_an_oversized_body_is_refused(conn: http.client.HTTPConnection) -> None:
    body = b'{"ModelName": "' + b"x" * (17 * 1024 * 1024) + b'"}'
    status, _, raw = post(conn, body, target("CreateModel"))
    answer = json.loads(raw)
    assert (status, answer["__type"]) == (400, "SerializationException")
    assert answer["message"] == "Request body exceeds 16777216 bytes."


# -- fuzz -------------------------------------------------------------------------------------

LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
ANY_JSON = st.recursive(
    LEAF,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=16,
)
NAMES = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9-]{0,20}", fullmatch=True)


def shaped(shape: Shape, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values that follow `shape` most of the time, and anything at all otherwise."""
    if depth > 4:
        return LEAF
    kind = shape.type_name
    if kind == "structure":
        members = {name: shaped(member, depth + 1) for name, member in shape.members.items()}  # type: ignore[attr-defined]
        typed: st.SearchStrategy[Any] = st.fixed_dictionaries({}, optional=members)
    elif kind == "list":
        typed = st.lists(shaped(shape.member, depth + 1), max_size=3)  # type: ignore[attr-defined]
    elif kind == "map":
        typed = st.dictionaries(
            st.text(max_size=12) | NAMES,
            shaped(shape.value, depth + 1),
            max_size=3,  # type: ignore[attr-defined]
        )
    elif kind == "string":
        enum = shape.enum
        typed = st.sampled_from(enum) if enum else (NAMES | st.text(max_size=80))
    elif kind in ("integer", "long"):
        typed = st.integers(min_value=-10, max_value=5000) | st.integers()
    elif kind in ("float", "double"):
        typed = st.floats(allow_nan=True, allow_infinity=True)
    elif kind == "boolean":
        typed = st.booleans()
    elif kind == "timestamp":
        typed = st.floats(min_value=0, max_value=4e9) | st.text(max_size=30)
    else:
        typed = LEAF
    return st.one_of(typed, typed, typed, ANY_JSON)


def _body(operation: str) -> st.SearchStrategy[bytes]:
    shape = MODEL.operation_model(operation).input_shape
    encoded = st.one_of(shaped(shape), ANY_JSON).map(
        lambda value: json.dumps(value, allow_nan=True).encode()
    )
    return st.one_of(encoded, encoded, encoded, st.binary(max_size=64))


REQUESTS = st.one_of(
    *[st.tuples(st.just(op), _body(op)) for op in OPERATIONS],
    st.tuples(st.sampled_from(["CreateTrainingJob", "", "Nope"]), st.binary(max_size=16)),
)


@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=REQUESTS)
def test_fuzz_every_operation(server: PolyhostProcess, request: tuple[str, bytes]) -> None:
    operation, body = request
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        status, headers, raw = post(connection, body, target(operation))
    finally:
        connection.close()
    assert status < 500, raw
    answer = json.loads(raw)
    assert isinstance(answer, dict)
    if status >= 400:
        assert 400 <= status < 500
        assert isinstance(answer.get("__type"), str) and answer["__type"]
        assert isinstance(answer.get("message"), str) and answer["message"]
        assert headers["x-amzn-errortype"] == answer["__type"]
    else:
        assert status == 200
        # A valid answer is valid JSON: no NaN or Infinity leaks back out.
        assert not any(isinstance(v, float) and not math.isfinite(v) for v in answer.values())


def test_still_answering_after_the_fuzz(
    server: PolyhostProcess, conn: http.client.HTTPConnection
) -> None:
    status, _, body = post(conn, b'{"ModelName": "after-fuzz"}', target("DescribeModel"))
    assert status == 400
    assert json.loads(body)["message"].startswith('Could not find model "')
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/ping")
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    assert "Traceback" not in server.log()
