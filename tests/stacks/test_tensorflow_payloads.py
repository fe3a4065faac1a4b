"""SageMaker's body conversions for the TensorFlow stack: JSON, JSON lines, CSV, 415."""

from __future__ import annotations

import pytest

from polyhost.stacks.tensorflow.errors import TfsError
from polyhost.stacks.tensorflow.payloads import decode_invocation, response_content_type


def decode(body: str, content_type: str | None = "application/json") -> object:
    return decode_invocation(body.encode(), content_type)


def test_tensorflow_serving_requests_pass_through() -> None:
    for document in (
        '{"instances": [1, 2]}',
        '{"inputs": {"a": [1]}, "signature_name": "s"}',
        '{"examples": [{"x": 1}]}',
    ):
        assert decode(document) == __import__("json").loads(document)


def test_other_json_becomes_instances_as_sagemaker_wraps_it() -> None:
    assert decode("[[1, 2], [3, 4]]") == {"instances": [[1, 2], [3, 4]]}
    assert decode("[1, 2, 3]") == {"instances": [[1, 2, 3]]}  # one row
    assert decode("[]") == {"instances": [[]]}
    assert decode("5") == {"instances": [5]}
    assert decode('{"x": [1, 2]}') == {"instances": [{"x": [1, 2]}]}
    assert decode('[{"x": 1}, {"x": 2}]') == {"instances": [{"x": 1}, {"x": 2}]}
    assert decode('[{"b64": "AA=="}]') == {"instances": [[{"b64": "AA=="}]]}


def test_json_lines() -> None:
    assert decode("[1, 2]\n\n[3, 4]\r\n", "application/jsonlines") == {
        "instances": [[1, 2], [3, 4]]
    }
    assert decode('{"instances": [1]}\n', "application/jsonlines") == {"instances": [1]}
    assert decode('{"x": 1}\n{"x": 2}', "application/jsons") == {"instances": [{"x": 1}, {"x": 2}]}
    # Several documents sent as application/json are JSON lines too, as in SageMaker.
    assert decode('{"x": 1}\n{"x": 2}') == {"instances": [{"x": 1}, {"x": 2}]}


def test_csv_numbers_or_strings_decided_by_the_first_field() -> None:
    assert decode("1,2.5,-3e2\n4,5,6\n", "text/csv") == {"instances": [[1, 2.5, -300.0], [4, 5, 6]]}
    assert decode("1\n2\n", "text/csv") == {"instances": [1, 2]}
    assert decode('hello,"a, b"\nworld,1\n', "text/csv") == {
        "instances": [["hello", "a, b"], ["world", "1"]]
    }
    with pytest.raises(TfsError, match="row 2, column 2: 'x' is not a number"):
        decode("1,2\n3,x\n", "text/csv")
    with pytest.raises(TfsError, match="no rows"):
        decode("\n\n", "text/csv")


def test_media_type_parameters_and_case_are_ignored_and_none_means_json() -> None:
    assert decode("[[1]]", "Application/JSON; charset=utf-8") == {"instances": [[1]]}
    assert decode("[[1]]", None) == {"instances": [[1]]}


def test_errors() -> None:
    with pytest.raises(TfsError) as raised:
        decode("x", "image/png")
    assert raised.value.status == 415
    assert raised.value.message.startswith("Unsupported Media Type: image/png")
    assert raised.value.body().startswith(b'{"error": ')
    for body, message in (
        ("", "JSON Parse error: The document is empty"),
        ("  \n", "JSON Parse error: The document is empty"),
        ('{"instances": [1', "JSON Parse error: Expecting"),
        ("[1]\n[2", "JSON Parse error: Expecting"),
    ):
        with pytest.raises(TfsError, match=message.replace("[", r"\[")) as raised:
            decode(body)
        assert raised.value.status == 400
    with pytest.raises(TfsError, match="not UTF-8"):
        decode_invocation(b"\xff\xfe", "application/json")


def test_answer_content_type_follows_accept() -> None:
    assert response_content_type(None) == "application/json"
    assert response_content_type("*/*") == "application/json"
    assert response_content_type("text/csv") == "application/json"
    assert response_content_type("application/json, application/jsonlines") == (
        "application/jsonlines"
    )
