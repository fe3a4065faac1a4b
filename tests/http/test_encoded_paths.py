"""Percent-escapes in a path are decoded as AWS decodes them: `/endpoints/ep%31/invocations`
is endpoint ep1's, on the fast lane and the coroutine path, for InvokeEndpoint and its
streaming form; a name that decodes to something no endpoint has is not found under its
decoded name."""

from __future__ import annotations

import http.client

import pytest

from tests.support.endpoints import deploy, echo_container
from tests.support.server import PolyhostProcess


@pytest.fixture(scope="module")
def endpoint(server: PolyhostProcess) -> str:
    description = deploy(server.sagemaker(), "ep1", [echo_container("solo")])
    assert description["EndpointStatus"] == "InService", description
    return "ep1"


def post(server: PolyhostProcess, path: str, body: bytes = b"hello") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", path, body=body, headers={"Content-Type": "text/plain"})
    answer = connection.getresponse()
    data = answer.read()
    connection.close()
    return answer.status, data


def test_an_escaped_name_reaches_the_endpoint(server: PolyhostProcess, endpoint: str) -> None:
    for _ in range(3):  # the first call opens the upstream connection, later ones reuse it
        status, body = post(server, "/endpoints/ep%31/invocations")
        assert status == 200, body


def test_an_escaped_name_that_names_no_endpoint_is_not_found_by_its_decoded_name(
    server: PolyhostProcess, endpoint: str
) -> None:
    status, body = post(server, "/endpoints/ep%32/invocations")
    assert status == 400
    assert b"Endpoint ep2 of account" in body, body


def test_the_streaming_route_decodes_the_name_too(server: PolyhostProcess, endpoint: str) -> None:
    status, body = post(server, "/endpoints/ep%31/invocations-response-stream")
    assert status == 200, body
