"""The runtime adapter in process: `RuntimeAdapter.answer`, plain bytes in and out.

The server's HTTP protocol hands InvokeEndpoint requests straight to `answer`; whatever it
returns is what botocore parses. These tests check that contract without a socket: which
headers are read and refused, how the router's result and errors are put on the wire (rest-json:
`x-amzn-ErrorType` plus a JSON body), and that an unexpected failure never leaks its detail.
A real router routes to fake upstream pools, so the headers each container is sent are visible.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterable

import pytest

from polyhost.control.seam import InferenceMode
from polyhost.http.errors import INTERNAL_MESSAGE
from polyhost.http.services.runtime import RuntimeAdapter
from polyhost.router.router import Router
from polyhost.router.upstream import UpstreamTimeout
from polyhost.settings import MiB, Settings
from tests.support.fake_pool import (
    FakePool,
    answer,
    container_route,
    endpoint_route,
    variant_route,
)

Headers = list[tuple[bytes, bytes]]
LOG_ARN = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/ep"
REQUEST_ID = re.compile(rb"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def routed(*pools: FakePool, mode: InferenceMode = "Serial") -> tuple[RuntimeAdapter, Router]:
    """An adapter over a router holding endpoint `ep`: one variant `Main`, `pools` in order."""
    router = Router(Settings(invocation_timeout_s=2.0))
    containers = tuple(container_route(pool.name, pool, variant="Main") for pool in pools)
    router.publish(endpoint_route("ep", variant_route("Main", containers, mode=mode)))
    return RuntimeAdapter(router, max_body_bytes=6 * MiB), router


def adapter_for(*pools: FakePool, mode: InferenceMode = "Serial") -> RuntimeAdapter:
    return routed(*pools, mode=mode)[0]


def call(
    adapter: RuntimeAdapter,
    headers: Iterable[tuple[bytes, bytes]] = (),
    body: bytes | None = b"payload",
    endpoint: str = "ep",
) -> tuple[int, Headers, bytes]:
    return asyncio.run(adapter.answer(endpoint, list(headers), body))


def header(headers: Headers, name: bytes) -> bytes | None:
    values = [value for key, value in headers if key.lower() == name]
    assert len(values) <= 1, f"{name!r} answered {len(values)} times"
    return values[0] if values else None


def error_of(answered: tuple[int, Headers, bytes]) -> tuple[int, str, dict[str, object]]:
    """Status, x-amzn-ErrorType and JSON body of an error answer, checking its shape."""
    status, headers, body = answered
    assert header(headers, b"content-type") == b"application/json"
    request_id = header(headers, b"x-amzn-requestid")
    assert request_id is not None and REQUEST_ID.match(request_id)
    error_type = header(headers, b"x-amzn-errortype")
    assert error_type is not None
    payload = json.loads(body)
    assert isinstance(payload, dict) and isinstance(payload.get("message"), str)
    return status, error_type.decode(), payload


# -- success --------------------------------------------------------------------------------
def test_a_successful_invocation_answers_the_containers_body_and_the_variant() -> None:
    pool = FakePool("model").then(
        answer(b"result", content_type=b"text/csv", x_amzn_sagemaker_custom_attributes=b"out=1")
    )
    status, headers, body = call(
        adapter_for(pool),
        [
            (b"Content-Type", b"application/json"),
            (b"ACCEPT", b"text/csv"),
            (b"X-Amzn-SageMaker-Custom-Attributes", b"in=1"),
            (b"X-Amzn-SageMaker-Inference-Id", b"inference-7"),
            (b"X-Amzn-SageMaker-Something-Else", b"ignored"),
            (b"Authorization", b"not forwarded"),
        ],
    )
    assert (status, body) == (200, b"result")
    assert header(headers, b"content-type") == b"text/csv"
    assert header(headers, b"x-amzn-invoked-production-variant") == b"Main"
    assert header(headers, b"x-amzn-sagemaker-custom-attributes") == b"out=1"
    assert REQUEST_ID.match(header(headers, b"x-amzn-requestid") or b"")
    (sent,) = pool.calls
    assert sent.body == b"payload"
    assert sent.header(b"content-type") == b"application/json"
    assert sent.header(b"accept") == b"text/csv"
    assert sent.header(b"x-amzn-sagemaker-custom-attributes") == b"in=1"
    assert sent.header(b"x-amzn-sagemaker-inference-id") == b"inference-7"
    assert sent.header_names == {
        b"content-type",
        b"accept",
        b"x-amzn-sagemaker-custom-attributes",
        b"x-amzn-sagemaker-inference-id",
    }


def test_no_custom_attributes_back_means_no_header() -> None:
    status, headers, _ = call(adapter_for(FakePool("model")))
    assert status == 200
    assert header(headers, b"x-amzn-sagemaker-custom-attributes") is None


def test_every_answer_has_its_own_request_id() -> None:
    adapter = adapter_for(FakePool("model"))
    ids = {header(call(adapter)[1], b"x-amzn-requestid") for _ in range(5)}
    ids.add(header(call(adapter, body=None)[1], b"x-amzn-requestid"))
    assert len(ids) == 6


def test_an_empty_body_is_a_body() -> None:
    pool = FakePool("model")
    status, _, body = call(adapter_for(pool), body=b"")
    assert (status, body) == (200, b"model:")


def test_target_container_and_variant_headers_route_the_request() -> None:
    alpha, beta = FakePool("alpha"), FakePool("beta")
    status, headers, body = call(
        adapter_for(alpha, beta, mode="Direct"),
        [
            (b"x-amzn-sagemaker-target-container-hostname", b"beta"),
            (b"X-Amzn-SageMaker-Target-Variant", b"Main"),
        ],
    )
    assert (status, body) == (200, b"beta:payload")
    assert header(headers, b"x-amzn-invoked-production-variant") == b"Main"
    assert alpha.calls == []


# -- requests refused before routing --------------------------------------------------------
def test_custom_attributes_of_1024_characters_pass_and_1025_are_refused() -> None:
    pool = FakePool("model")
    adapter = adapter_for(pool)
    longest = b"a" * 1024
    assert call(adapter, [(b"x-amzn-sagemaker-custom-attributes", longest)])[0] == 200
    assert pool.calls[0].header(b"x-amzn-sagemaker-custom-attributes") == longest

    status, error_type, payload = error_of(
        call(adapter, [(b"x-amzn-sagemaker-custom-attributes", longest + b"a")])
    )
    assert (status, error_type) == (400, "ValidationError")
    assert payload == {
        "message": "CustomAttributes must be at most 1024 visible US-ASCII characters."
    }
    assert len(pool.calls) == 1  # the refused request never reached the container


def test_non_ascii_custom_attributes_are_refused() -> None:
    pool = FakePool("model")
    answered = call(adapter_for(pool), [(b"x-amzn-sagemaker-custom-attributes", "é".encode())])
    status, error_type, payload = error_of(answered)
    assert (status, error_type) == (400, "ValidationError")
    assert "US-ASCII" in str(payload["message"])
    assert pool.calls == []


@pytest.mark.parametrize(
    "name",
    [
        "X-Amzn-SageMaker-Target-Container-Hostname",
        "X-Amzn-SageMaker-Target-Variant",
        "X-Amzn-SageMaker-Target-Model",
    ],
)
def test_non_ascii_target_names_are_refused_naming_the_header(name: str) -> None:
    pool = FakePool("model")
    answered = call(adapter_for(pool), [(name.lower().encode(), "modèle".encode())])
    status, error_type, payload = error_of(answered)
    assert (status, error_type) == (400, "ValidationError")
    assert payload["message"] == f"Header {name} must be ASCII."
    assert pool.calls == []


def test_a_body_over_the_cap_is_refused_naming_the_cap() -> None:
    pool = FakePool("model")
    status, error_type, payload = error_of(call(adapter_for(pool), body=None))
    assert (status, error_type) == (400, "ValidationError")
    assert payload["message"] == (
        "Request body is larger than 6291456 bytes (6 MB), the most InvokeEndpoint accepts. "
        "Send a smaller payload."
    )
    assert pool.calls == []


def test_the_cap_in_the_message_is_the_adapters_own() -> None:
    router = Router(Settings())
    small = RuntimeAdapter(router, max_body_bytes=MiB // 2)
    _, _, payload = error_of(call(small, body=None))
    assert "larger than 524288 bytes (0.5 MB)" in str(payload["message"])


# -- the router's errors on the wire ---------------------------------------------------------
def test_an_unknown_endpoint_is_a_400_validation_error() -> None:
    status, error_type, payload = error_of(call(adapter_for(FakePool("m")), endpoint="other"))
    assert (status, error_type) == (400, "ValidationError")
    assert payload == {"message": "Endpoint other of account 123456789012 not found."}


def test_target_model_on_a_single_model_endpoint_is_refused() -> None:
    answered = call(adapter_for(FakePool("m")), [(b"x-amzn-sagemaker-target-model", b"a.tar.gz")])
    status, error_type, payload = error_of(answered)
    assert (status, error_type) == (400, "ValidationError")
    assert "not a multi-model endpoint" in str(payload["message"])


def test_a_model_error_carries_the_containers_status_message_and_log() -> None:
    pool = FakePool("model").then(answer(b"bad feature", status=422))
    status, error_type, payload = error_of(call(adapter_for(pool)))
    assert (status, error_type) == (424, "ModelError")
    assert payload["OriginalStatusCode"] == 422
    assert payload["OriginalMessage"] == "bad feature"
    assert payload["LogStreamArn"] == LOG_ARN
    assert 'Received client error (422) from model with message "bad feature"' in str(
        payload["message"]
    )
    assert set(payload) == {"message", "OriginalStatusCode", "OriginalMessage", "LogStreamArn"}


def test_a_timeout_is_a_model_error_with_only_the_log_arn() -> None:
    pool = FakePool("model").then(UpstreamTimeout("timed out"))
    status, error_type, payload = error_of(call(adapter_for(pool)))
    assert (status, error_type) == (424, "ModelError")
    assert set(payload) == {"message", "LogStreamArn"}
    assert "(Timeout: 2 s.)" in str(payload["message"])


def test_an_unavailable_container_is_a_503() -> None:
    adapter, router = routed(FakePool("model"))
    route = router.route("ep")
    assert route is not None
    container = route.variants[0].replicas[0].containers[0]
    container.available = False
    container.unavailable_reason = "it is stopping"
    status, error_type, payload = error_of(call(adapter))
    assert (status, error_type) == (503, "ServiceUnavailable")
    assert payload == {
        "message": "Container model of endpoint ep is unavailable: it is stopping. Retry shortly."
    }


def test_an_unexpected_exception_is_a_500_without_its_detail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The log gets the traceback; the caller gets a fixed sentence and nothing of the bug."""
    pool = FakePool("model").then(RuntimeError("secret detail /srv/keys"))
    with caplog.at_level(logging.ERROR, logger="polyhost.runtime"):
        answered = call(adapter_for(pool))
    status, error_type, payload = error_of(answered)
    assert (status, error_type) == (500, "InternalFailure")
    assert payload == {"message": INTERNAL_MESSAGE}
    body = answered[2]
    assert b"secret" not in body and b"Traceback" not in body and b"RuntimeError" not in body
    (record,) = [r for r in caplog.records if r.name == "polyhost.runtime"]
    assert record.exc_info is not None and "secret detail" in str(record.exc_info[1])
    assert "ep" in record.getMessage()
