"""The AWS JSON adapter's bound on nesting: deep arrays and objects are a 400, never a 500.

A 400-level array in a string member (814 bytes) once answered InternalFailure and wrote a
138 KB RecursionError to the log. Bodies nesting past 64 levels are now refused before they
are decoded; brackets inside strings are text and do not count.
"""

from __future__ import annotations

import json

import pytest

from tests.control.helpers import raw_call
from tests.support.server import PolyhostProcess


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [65, 400, 100_000])
def test_nesting_past_64_levels_is_a_serialization_exception(
    server: PolyhostProcess, depth: int
) -> None:
    body = ('{"ModelName": ' + nested(depth) + "}").encode()
    status, answer = raw_call(server, "CreateModel", body)
    assert status == 400
    assert answer["__type"] == "SerializationException"
    assert "more than 64 levels deep" in answer["message"]


def test_nesting_inside_objects_counts_too(server: PolyhostProcess) -> None:
    body = '{"a": ' * 70 + "1" + "}" * 70
    status, answer = raw_call(server, "ListModels", body.encode())
    assert (status, answer["__type"]) == (400, "SerializationException")


def test_64_levels_reach_validation_and_get_a_short_message(server: PolyhostProcess) -> None:
    body = ('{"ModelName": ' + nested(63) + "}").encode()  # 64 with the object
    status, answer = raw_call(server, "CreateModel", body)
    assert (status, answer["__type"]) == (400, "ValidationException")
    assert (
        "at 'modelName' failed to satisfy constraint: Member must be a string"
        in (answer["message"])
    )
    assert len(answer["message"]) < 2000


def test_brackets_inside_strings_are_not_nesting(server: PolyhostProcess) -> None:
    text = "[{" * 500 + '\\"' + "]}" * 10
    body = json.dumps({"NameContains": text}).encode()
    status, answer = raw_call(server, "ListModels", body)
    assert (status, answer["__type"]) == (400, "ValidationException")  # too long, not too deep


def test_a_deep_body_leaves_no_traceback(server: PolyhostProcess) -> None:
    raw_call(server, "CreateModel", ('{"ModelName": ' + nested(400) + "}").encode())
    log = server.log()
    assert "RecursionError" not in log and "Traceback" not in log
