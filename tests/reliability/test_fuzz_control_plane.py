"""Fuzz every control-plane operation and the runtime's headers and bodies against a real server.

Inputs come from botocore's service models: for each operation a value that follows its input
shape (members, enums, lengths, ranges, with names drawn from a small pool so that creates,
describes, updates and deletes meet each other), then mutated the ways a broken or hostile
client would: a member of the wrong type, a string one past its maximum or holding NUL and
other control characters, out-of-range and non-finite numbers, values nested deep, bodies cut
short. The runtime gets arbitrary header values and bodies on a live Direct endpoint.

The properties: never a 5xx, every error in its protocol's shape with a message, and afterwards
the server still answers and its log holds no traceback. Examples are bounded so the file runs
in well under a minute.
"""

from __future__ import annotations

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
from tests.reliability.hostile_client import ping, send_and_read
from tests.support.endpoints import deploy, echo_container
from tests.support.server import ECHO_IMAGE, PolyhostProcess

CONTROL = botocore.session.get_session().get_service_model("sagemaker")
RUNTIME = botocore.session.get_session().get_service_model("sagemaker-runtime")
ARN = "arn:aws:sagemaker:us-east-1:123456789012"

# -- values -------------------------------------------------------------------------------------

POOL = st.sampled_from(["fz-a", "fz-b", "FZ-A"])  # case-insensitive names meet each other
NAMES = POOL | st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9-]{0,20}", fullmatch=True)
CONTROL_TEXT = st.text(alphabet=st.characters(max_codepoint=0x1F) | st.just("\x7f"), max_size=4)
ODD_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(max_size=8).flatmap(lambda t: CONTROL_TEXT.map(lambda c: t + c + t)),
    st.just("\ud800"),  # a lone surrogate: valid JSON escape, not valid Unicode text
)
LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | ODD_TEXT
)


def deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


WRONG = st.one_of(LEAF, st.lists(LEAF, max_size=3), st.sampled_from([2, 10, 63, 64, 500]).map(deep))

# Members whose realistic values a generic generator would never hit.
SPECIAL: dict[str, st.SearchStrategy[Any]] = {
    "Image": st.sampled_from([ECHO_IMAGE] * 4 + ["acme/unknown:1", f"{ECHO_IMAGE} ", ""]),
    "ModelDataUrl": st.sampled_from(
        [
            "file:///nonexistent/model.tar.gz",
            "s3://bucket/key.tar.gz",
            "https://127.0.0.1:1/model.tar.gz",
        ]
    ),
    "ExecutionRoleArn": st.just("arn:aws:iam::123456789012:role/fuzz"),
    "ResourceArn": st.builds(
        lambda kind, name: f"{ARN}:{kind}/{name}",
        st.sampled_from(["model", "endpoint-config", "endpoint", "training-job"]),
        POOL,
    ),
    "InstanceType": st.just("ml.m5.large"),
    "InitialInstanceCount": st.just(1),
    "EndpointName": POOL,  # at most two endpoints (and their containers) at a time
}
for member in ("ModelName", "EndpointConfigName", "VariantName", "Key", "Value"):
    SPECIAL[member] = NAMES
# Wrong in ways a generic mutation would not find.
HOSTILE: dict[str, st.SearchStrategy[Any]] = {
    "ModelDataUrl": st.sampled_from(
        ["file:///srv/a\x00b.tar.gz", "file:///srv/a%00b", "s3://b/k\x1b", "ftp://x/y", "file:"]
    ),
}
# Optional in the model, but a request without them only ever meets the same rule.
ALWAYS = frozenset(["Image", "ModelName", "VariantName", "InitialInstanceCount"])
# Optional members a near-valid request may carry: those the SageMaker SDK and CLI send.
COMMON = frozenset(
    [
        *("PrimaryContainer", "Containers", "InferenceExecutionConfig", "Mode", "Image"),
        *("ModelDataUrl", "Environment", "ContainerHostname", "ExecutionRoleArn", "Tags"),
        *("ModelName", "VariantName", "InitialInstanceCount", "InstanceType"),
        *("InitialVariantWeight", "NameContains", "MaxResults", "SortBy", "SortOrder"),
        *("NextToken", "StatusEquals", "CreationTimeAfter", "RetainAllVariantProperties"),
    ]
)


def structure(
    members: dict[str, Shape], required: set[str], optional: set[str], depth: int, mutate: bool
) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {name: value(members[name], depth + 1, mutate, name) for name in required},
        optional={name: value(members[name], depth + 1, mutate, name) for name in optional},
    )


def valid(shape: Shape, depth: int, mutate: bool) -> st.SearchStrategy[Any]:
    """A value following `shape`'s type and constraints (lists and maps kept short)."""
    kind = shape.type_name
    low = shape.metadata.get("min")
    high = shape.metadata.get("max")
    if kind == "structure":
        members = shape.members  # type: ignore[attr-defined]
        required = set(shape.required_members)  # type: ignore[attr-defined]
        optional = {name for name in members if name not in required}
        if not mutate:  # the members real clients send, so that some requests succeed
            required |= optional & ALWAYS
            optional &= COMMON - ALWAYS
        exclusive = optional & {"PrimaryContainer", "Containers"}
        if not mutate and len(exclusive) == 2:  # CreateModel: one of them, as clients send it
            return st.one_of(
                *[
                    structure(members, required | {one}, optional - exclusive, depth, mutate)
                    for one in sorted(exclusive)
                ]
            )
        return structure(members, required, optional, depth, mutate)
    if kind == "list":
        return st.lists(
            value(shape.member, depth + 1, mutate),  # type: ignore[attr-defined]
            min_size=int(low or 0),
            max_size=min(int(high or 3), 3),
        )
    if kind == "map":
        return st.dictionaries(
            st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True),
            value(shape.value, depth + 1, mutate),  # type: ignore[attr-defined]
            max_size=3,
        )
    if kind == "string":
        enum: list[str] = shape.enum  # type: ignore[attr-defined]
        if enum:
            return st.sampled_from(enum)
        size = int(high) if high is not None else 80
        return NAMES.filter(lambda text: len(text) <= size) | st.text(
            st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=min(size, 80)
        )
    if kind in ("integer", "long"):
        return st.integers(int(low) if low is not None else -5, int(high) if high else 5000)
    if kind in ("float", "double"):
        return st.floats(low if low is not None else -1e6, high or 1e6)
    if kind == "boolean":
        return st.booleans()
    if kind == "timestamp":
        return st.floats(0, 4e9) | st.sampled_from(["2024-01-01T00:00:00Z", "yesterday"])
    return LEAF


def invalid(shape: Shape, member: str | None) -> st.SearchStrategy[Any]:
    """What a broken client sends where `shape` belongs."""
    high = shape.metadata.get("max")
    options = [WRONG]
    if member in HOSTILE:
        options.append(HOSTILE[member])
    if shape.type_name == "string":
        if high is not None:
            options.append(st.just("x" * (int(high) + 1)))
        options.append(ODD_TEXT)
    if shape.type_name in ("integer", "long", "float", "double"):
        options.append(st.sampled_from([-1, 2**31, 2**63, math.inf, math.nan, 1e308]))
    return st.one_of(options)


def value(
    shape: Shape, depth: int = 0, mutate: bool = True, member: str | None = None
) -> st.SearchStrategy[Any]:
    """A value for `shape`: valid throughout, or (`mutate`) wrong here and there, so that
    requests reach the deepest checks with one or two things wrong."""
    if depth > 5:
        return LEAF
    special = SPECIAL.get(member or "")
    typed = special if special is not None else valid(shape, depth, mutate)
    if not mutate:
        return typed
    return st.one_of(typed, typed, typed, typed, invalid(shape, member))


def body_for(operation: str) -> st.SearchStrategy[bytes]:
    shape = CONTROL.operation_model(operation).input_shape
    assert shape is not None
    near_valid = value(shape, mutate=False).map(lambda params: json.dumps(params).encode())
    mutated = value(shape).map(lambda params: json.dumps(params, allow_nan=True).encode())
    cut = mutated.flatmap(lambda raw: st.integers(0, len(raw)).map(lambda n: raw[:n]))
    raw = st.binary(max_size=64)
    return st.one_of(near_valid, near_valid, near_valid, mutated, mutated, cut, raw)


CONTROL_REQUESTS = st.one_of(
    *[st.tuples(st.just(operation), body_for(operation)) for operation in OPERATIONS],
    st.tuples(st.sampled_from(["CreateTrainingJob", "Search", "", "Nope\x7f"]), st.binary()),
)

# -- the wire -------------------------------------------------------------------------------------


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    answer = send_and_read(port, request)
    assert answer.status is not None, answer.raw[:300]
    return answer.status, answer.headers, answer.body


def control_request(operation: str, body: bytes) -> bytes:
    head = (
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.1\r\n"
        f"X-Amz-Target: SageMaker.{operation}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("utf-8", "surrogateescape") + body


def assert_well_formed(status: int, headers: dict[str, str], body: bytes) -> None:
    """Never a 5xx; an error names its type and says what is wrong."""
    assert status < 500, body[:500]
    if status >= 400:
        answer = json.loads(body)
        assert isinstance(answer, dict)
        assert headers.get("x-amzn-errortype") or answer.get("__type"), headers
        assert isinstance(answer.get("message"), str) and answer["message"], answer


@settings(
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(request=CONTROL_REQUESTS)
def test_fuzz_control_plane(server: PolyhostProcess, request: tuple[str, bytes]) -> None:
    operation, body = request
    status, headers, raw = exchange(server.port, control_request(operation, body))
    assert_well_formed(status, headers, raw)
    if status == 200:
        answer = json.loads(raw)
        assert not any(isinstance(v, float) and not math.isfinite(v) for v in answer.values())


# -- the runtime ----------------------------------------------------------------------------------

LIVE = "fz-live"
INVOKE_INPUT = RUNTIME.operation_model("InvokeEndpoint").input_shape
assert INVOKE_INPUT is not None
HEADER_NAMES = [
    member.serialization["name"]
    for member in INVOKE_INPUT.members.values()
    if member.serialization.get("location") == "header"
]
# Values without "=": the test container reads key=value custom attributes as instructions.
HEADER_VALUES = st.one_of(
    st.sampled_from(["a", "b", "nope", "application/json", "*/*", "", "AllTraffic"]),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80),
    st.binary(max_size=64),
    st.just("x" * 2000),
).map(lambda v: (v if isinstance(v, bytes) else v.encode()).replace(b"=", b"-"))
HEADERS = st.lists(
    st.tuples(st.sampled_from(HEADER_NAMES).map(str.encode), HEADER_VALUES), max_size=5
)
PATHS = st.one_of(
    st.just(LIVE), NAMES, st.text(max_size=12).map(lambda t: t.encode().hex() or "x")
).map(lambda name: f"/endpoints/{name}/invocations".encode())
BODIES = st.one_of(st.binary(max_size=2048), st.just(b"x" * (6 * 1024 * 1024 + 1)))


@pytest.fixture(scope="module")
def live(sagemaker: Any) -> Iterator[str]:
    containers = [echo_container("a"), echo_container("b")]
    assert deploy(sagemaker, LIVE, containers, mode="Direct")["EndpointStatus"] == "InService"
    yield LIVE


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(path=PATHS, headers=HEADERS, body=BODIES, chunked=st.booleans())
@pytest.mark.filterwarnings("ignore:Generating overly large repr")
def test_fuzz_runtime(
    server: PolyhostProcess,
    live: str,
    path: bytes,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    chunked: bool,
) -> None:
    head = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    if chunked:
        framed = b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n"
        if not body:
            framed = b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    else:
        framed = b"Content-Length: %d\r\n\r\n" % len(body) + body
    status, out_headers, raw = exchange(server.port, head + framed)
    assert_well_formed(status, out_headers, raw)


def test_the_server_still_answers_and_logged_no_traceback(
    server: PolyhostProcess, live: str
) -> None:
    assert ping(server.port) == 200
    status, _, raw = exchange(server.port, control_request("ListModels", b"{}"))
    assert status == 200, raw
    request = (
        f"POST /endpoints/{live}/invocations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        "X-Amzn-SageMaker-Target-Container-Hostname: a\r\nContent-Length: 2\r\n\r\nhi"
    ).encode()
    assert exchange(server.port, request)[2] == b"a:hi"
    assert "Traceback" not in server.log()
