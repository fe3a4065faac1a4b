"""TensorFlow Serving's JSON <-> tensor rules, without TensorFlow."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from polyhost.stacks.tensorflow.errors import TfsError
from polyhost.stacks.tensorflow.jsontensor import (
    TensorInfo,
    check_shapes,
    examples_request,
    predict_inputs,
    render_classify,
    render_predict,
    render_regress,
    to_array,
)

FLOAT_ROWS = TensorInfo("float32", (None, 2))
INPUTS = {"a": FLOAT_ROWS, "b": TensorInfo("int32", (None,))}


def test_numbers_become_arrays_of_the_signature_dtype() -> None:
    array = to_array([[1, 2.5], [3, 4]], "float32")
    assert array.dtype == np.float32 and array.shape == (2, 2)
    assert to_array(7, "int64").dtype == np.int64
    assert to_array([True, False], "bool").tolist() == [True, False]
    assert to_array([], "float32").shape == (0,)
    assert to_array(["a", {"b64": "AAE="}], "string").tolist() == [b"a", b"\x00\x01"]


@pytest.mark.parametrize(
    ("value", "dtype", "message"),
    [
        (["a"], "float32", 'JSON Value: "a" Type: String is not of expected type: float'),
        ([1.5], "int32", "JSON Value: 1.5 Type: Number is not of expected type: int32"),
        ([True], "float64", "JSON Value: true Type: True is not of expected type: double"),
        ([None], "float32", "JSON Value: null Type: Null is not of expected type: float"),
        ([1], "bool", "is not of expected type: bool"),
        ([1], "string", "JSON Value: 1 Type: Number is not of expected type: string"),
        ([[1, 2], [3]], "float32", "Encountered list at unexpected size: 1 at level: 1"),
        ([[1, 2], 3], "float32", "JSON Value: 3 found at incorrect level: 2"),
        ([1, [2]], "float32", "Encountered list at unexpected level: 1 expected < 1"),
        ([300], "int8", "JSON Value: 300 is out of range for type: int8"),
        ([-1], "uint8", "JSON Value: -1 is out of range for type: uint8"),
        ([{"b64": "!!"}], "string", "Unable to base64 decode"),
        ([{"x": "a"}], "string", "not formatted correctly for base64 data"),
        ([1], "complex64", "to type: complex64 is not supported"),
    ],
)
def test_bad_values_are_refused_with_tensorflow_servings_words(
    value: object, dtype: str, message: str
) -> None:
    with pytest.raises(TfsError, match=message.replace("[", r"\[")) as raised:
        to_array(value, dtype)
    assert raised.value.status == 400


def test_row_and_columnar_requests() -> None:
    fmt, arrays = predict_inputs({"instances": [{"a": [1, 2], "b": 3}]}, INPUTS)
    assert fmt == "row"
    assert arrays["a"].tolist() == [[1.0, 2.0]] and arrays["b"].tolist() == [3]
    fmt, arrays = predict_inputs({"inputs": {"a": [[1, 2]], "b": [3], "extra": 1}}, INPUTS)
    assert fmt == "columnar" and sorted(arrays) == ["a", "b"]
    fmt, arrays = predict_inputs({"instances": [[1, 2], [3, 4]]}, {"x": FLOAT_ROWS})
    assert arrays["x"].shape == (2, 2)
    fmt, arrays = predict_inputs({"inputs": [[1, 2]]}, {"x": FLOAT_ROWS})
    assert fmt == "columnar" and arrays["x"].shape == (1, 2)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({}, "Missing 'inputs' or 'instances' key"),
        ({"instances": [1], "inputs": [1]}, "only one of 'inputs' or 'instances'"),
        ({"instances": 1}, "Expecting 'instances' to be a list/array"),
        ({"instances": []}, "No values in 'instances' array"),
        ({"instances": [[1, 2]]}, "instances is a plain list, but expecting list of objects"),
        ({"instances": [{"a": [1, 2], "b": 1}, [1]]}, "Expecting object but got list at item 1"),
        ({"instances": [{"a": [1, 2]}]}, "must only have keys: a,b"),
        ({"instances": [{"a": [1, 2], "b": 1, "c": 2}]}, "does not have named input: c"),
        ({"inputs": [1]}, "inputs is a plain value/list, but expecting an object"),
        ({"inputs": {"a": [[1, 2]]}}, "Missing named input: b in 'inputs' object."),
    ],
)
def test_malformed_predict_requests(request_: dict[str, object], message: str) -> None:
    with pytest.raises(TfsError, match=message.replace("[", r"\[")):
        predict_inputs(request_, INPUTS)


def test_shapes_are_checked_against_the_signature() -> None:
    check_shapes({"a": np.zeros((5, 2))}, {"a": FLOAT_ROWS}, "s")
    check_shapes({"a": np.zeros((5, 2, 1))}, {"a": TensorInfo("float32", None)}, "s")
    with pytest.raises(TfsError, match=r"input 'a' of signature 's' takes shape \[-1,2\]"):
        check_shapes({"a": np.zeros((5, 3))}, {"a": FLOAT_ROWS}, "s")


def test_answers_are_written_as_tensorflow_serving_writes_them() -> None:
    one = {"y": np.array([0.2, 1.0, 1e-05, float("nan"), float("-inf")], dtype=np.float32)}
    assert render_predict(one, "row") == b'{"predictions": [0.2,1.0,1e-05,NaN,-Infinity]}'
    assert render_predict(one, "columnar") == b'{"outputs": [0.2,1.0,1e-05,NaN,-Infinity]}'
    two = {
        "scores": np.array([[1, 2], [3, 4]], dtype=np.int64),
        "ok": np.array([True, False]),
        "label_bytes": np.array([b"\x00", b"b"], dtype=object),
        "label": np.array([b"x", "\u00e9".encode()], dtype=object),
    }
    row = json.loads(render_predict(two, "row"))
    assert row == {
        "predictions": [
            {"label": "x", "label_bytes": {"b64": "AA=="}, "ok": True, "scores": [1, 2]},
            {"label": "\u00e9", "label_bytes": {"b64": "Yg=="}, "ok": False, "scores": [3, 4]},
        ]
    }
    columnar = json.loads(render_predict(two, "columnar"))
    assert columnar["outputs"]["scores"] == [[1, 2], [3, 4]]
    empty = {"y": np.zeros((1, 0, 2), dtype=np.float32)}
    assert render_predict(empty, "row") == b'{"predictions": [[]]}'
    assert math.isnan(json.loads(render_predict(one, "row"))["predictions"][3])


def test_row_answers_need_one_batch_size() -> None:
    with pytest.raises(TfsError, match="has no shape information"):
        render_predict({"y": np.float32(1)}, "row")
    with pytest.raises(TfsError, match="inconsistent batch size: 3 expecting: 2"):
        render_predict({"a": np.zeros(2), "b": np.zeros(3)}, "row")
    assert render_predict({"y": np.float32(1)}, "columnar") == b'{"outputs": 1.0}'


def test_classify_and_regress_results() -> None:
    scores = np.array([[0.25, 0.75]], dtype=np.float32)
    assert json.loads(render_classify([["a", "b"]], scores)) == {
        "results": [[["a", 0.25], ["b", 0.75]]]
    }
    assert json.loads(render_classify([["a"]], None)) == {"results": [[["a", 0.0]]]}
    assert render_regress(np.array([[3.5], [4.0]], dtype=np.float32)) == b'{"results": [3.5,4.0]}'


def test_examples_with_context() -> None:
    request = {
        "context": {"country": "fr"},
        "examples": [{"x": 1.5, "n": [1, 2], "flag": True, "img": {"b64": "AA=="}}],
    }
    assert examples_request(request, "classify") == [
        {
            "country": ("bytes", [b"fr"]),
            "x": ("float", [1.5]),
            "n": ("int64", [1, 2]),
            "flag": ("int64", [1]),
            "img": ("bytes", [b"\x00"]),
        }
    ]
    for bad, message in (
        ({"instances": [1]}, "When method is classify, key 'examples' is expected"),
        ({"examples": []}, "'examples' value is an empty array"),
        ({"examples": [1]}, "Example must be JSON object but got JSON Number"),
        ({"examples": [{"x": [1, "a"]}]}, "Unexpected element type in feature: x"),
        ({"examples": [{"x": None}]}, "Feature: x has element with unexpected JSON type: Null"),
    ):
        with pytest.raises(TfsError, match=message):
            examples_request(bad, "classify")
