"""The TensorFlow stack's dense-number path gives TensorFlow Serving's answers and messages."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from polyhost.stacks.tensorflow.errors import TfsError
from polyhost.stacks.tensorflow.jsontensor import TensorInfo, check_shapes, predict_inputs
from polyhost.stacks.tensorflow.payloads import decode_invocation, parse_request
from polyhost.stacks.toolkit.fastjson import DENSE_MIN_BYTES, DenseJson

IMAGES = TensorInfo("float32", (None, 28, 28, 1))


def _images(count: int = 3) -> list[Any]:
    values = np.arange(count * 784, dtype=np.float32).reshape(count, 28, 28, 1) / 7
    return np.round(values, 4).tolist()  # type: ignore[no-any-return]


def _both(body: bytes, inputs: dict[str, TensorInfo]) -> tuple[Any, Any]:
    """predict_inputs of the dense and the plain reading of `body`, or the error of each."""
    out = []
    for dense in (True, False):
        try:
            request = decode_invocation(body, "application/json", dense=dense)
            fmt, arrays = predict_inputs(request, inputs)
            check_shapes(arrays, inputs, "serving_default")
            out.append((fmt, {k: (v.dtype, v.tolist()) for k, v in arrays.items()}))
        except TfsError as error:
            out.append(("error", error.status, error.message))
    return out[0], out[1]


@pytest.mark.parametrize(
    "document",
    [
        {"instances": _images()},
        {"inputs": _images()},
        {"instances": _images(), "signature_name": "serving_default"},
        {"signature_name": "serving_default", "inputs": _images()},
        _images(),
    ],
)
def test_dense_requests_are_read_as_the_parsed_ones(document: Any) -> None:
    body = json.dumps(document).encode()
    assert len(body) > DENSE_MIN_BYTES
    request = decode_invocation(body, "application/json", dense=True)
    assert any(isinstance(value, DenseJson) for value in request.values())
    dense, plain = _both(body, {"images": IMAGES})
    assert dense == plain and dense[0] in ("row", "columnar")


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        ({"images": TensorInfo("int32", (None, 28, 28, 1))}, "is not of expected type: int32"),
        ({"images": TensorInfo("string", None)}, "is not of expected type: string"),
        ({"images": TensorInfo("bool", None)}, "is not of expected type: bool"),
        ({"images": TensorInfo("float32", (None, 28, 28))}, "takes shape [-1,28,28]"),
        ({"images": IMAGES, "other": IMAGES}, "expecting list of objects"),
        ({"images": TensorInfo("complex64", None)}, "is not supported"),
    ],
)
def test_dense_requests_keep_tensorflow_servings_messages(
    inputs: dict[str, TensorInfo], fragment: str
) -> None:
    body = json.dumps({"instances": _images()}).encode()
    dense, plain = _both(body, inputs)
    assert dense == plain
    assert dense[0] == "error" and fragment in dense[2]


def test_whole_numbers_for_integer_inputs_and_their_range() -> None:
    rows = (np.arange(3 * 784).reshape(3, 784) % 200).tolist()
    for dtype, expected in (("int32", "row"), ("uint8", "row"), ("int8", "error")):
        body = json.dumps({"instances": rows}).encode()
        dense, plain = _both(body, {"x": TensorInfo(dtype, (None, 784))})
        assert dense == plain and dense[0] == expected
        if expected == "error":
            assert "is out of range for type: int8" in dense[2]


def test_nan_and_infinity_are_accepted_as_tensorflow_serving_accepts_them() -> None:
    rows = _images()
    rows[0][0][1][0], rows[0][0][2][0] = 12345.5, 54321.5
    text = json.dumps({"instances": rows})
    text = text.replace("12345.5", "NaN").replace("54321.5", "-Infinity")
    dense, plain = _both(text.encode(), {"images": IMAGES})
    assert dense[0] == plain[0] == "row"
    got = np.asarray(dense[1]["images"][1], dtype=np.float32)
    assert np.array_equal(got, np.asarray(plain[1]["images"][1], dtype=np.float32), equal_nan=True)
    assert math.isnan(got[0, 0, 1, 0]) and got[0, 0, 2, 0] == -math.inf


def test_ragged_or_mixed_dense_looking_bodies_keep_their_messages() -> None:
    rows = _images()
    rows[-1] = rows[-1][:-1]
    for body in (
        json.dumps({"instances": rows}).encode(),
        json.dumps({"instances": [*_images(), "x"]}).encode(),
        json.dumps({"instances": _images(), "examples": []}).encode(),
    ):
        dense, plain = _both(body, {"images": IMAGES})
        assert dense == plain


def test_the_rest_api_reads_dense_requests_too() -> None:
    body = json.dumps({"instances": _images(), "signature_name": "s"}).encode()
    request = parse_request(body)
    assert isinstance(request["instances"], DenseJson) and request["signature_name"] == "s"
    assert parse_request(b'{"instances": [1]}') == {"instances": [1]}
