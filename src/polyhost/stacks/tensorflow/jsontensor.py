"""JSON values <-> tensors, following TensorFlow Serving's REST rules (its `json_tensor.cc`).

Kept free of TensorFlow so the rules are plain data handling: a signature's inputs are described
by `TensorInfo` (TensorFlow's dtype name and the static shape), values come out as numpy arrays
that the SavedModel layer turns into tensors.

Rules reproduced here, with TensorFlow Serving's messages where it has one:
- A tensor is a value or a nested list; its shape is read from the first element at each level
  and every list must match it. Floats take any JSON number, integers only whole numbers, bools
  only true/false, strings a JSON string or `{"b64": "<base64>"}` for binary data.
- Row format (`instances`): a list with one element per batch row; with several named inputs
  each element is an object holding every input. Columnar format (`inputs`): the value itself,
  or an object of input name -> value.
- Answers: row format gives `predictions` (a list of values for a single output, a list of
  objects for several), columnar gives `outputs` (the value, or an object of them). Float32
  numbers are written in their shortest round-trip form (`0.2`, not `0.20000000298023224`) as
  TensorFlow Serving does; NaN and Infinity are written as such; string outputs whose name ends
  in `_bytes` are written as `{"b64": ...}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from polyhost.stacks.tensorflow.errors import TfsError
from polyhost.stacks.toolkit.fastjson import DenseJson

Array = npt.NDArray[Any]
Format = Literal["row", "columnar"]

# TensorFlow dtype name -> (kind, numpy dtype the JSON values are gathered in).
_DTYPES: dict[str, tuple[str, Any]] = {
    "float16": ("float", np.float16),
    "bfloat16": ("float", np.float32),  # numpy has no bfloat16: the model layer casts
    "float32": ("float", np.float32),
    "float64": ("float", np.float64),
    "int8": ("int", np.int8),
    "int16": ("int", np.int16),
    "int32": ("int", np.int32),
    "int64": ("int", np.int64),
    "uint8": ("int", np.uint8),
    "uint16": ("int", np.uint16),
    "uint32": ("int", np.uint32),
    "uint64": ("int", np.uint64),
    "bool": ("bool", np.bool_),
    "string": ("string", object),
}
# The names TensorFlow Serving prints in its messages (DataTypeString).
_TFS_NAMES = {"float32": "float", "float64": "double", "float16": "half"}
# numpy kinds np.asarray may produce that a kind accepts without loss of meaning.
_FAST_KINDS = {"float": "fiu", "int": "iu", "bool": "b"}
_NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
BYTES_SUFFIX = "_bytes"


@dataclass(frozen=True)
class TensorInfo:
    """A signature input or output: TensorFlow's dtype name and static shape (None = any)."""

    dtype: str
    shape: tuple[int | None, ...] | None  # None: unknown rank

    def shape_text(self) -> str:
        if self.shape is None:
            return "[?]"
        return "[" + ",".join("-1" if dim is None else str(dim) for dim in self.shape) + "]"

    def accepts_shape(self, shape: tuple[int, ...]) -> bool:
        if self.shape is None:
            return True
        return len(shape) == len(self.shape) and all(
            want is None or want == got for want, got in zip(self.shape, shape, strict=True)
        )


def tfs_type_name(dtype: str) -> str:
    return _TFS_NAMES.get(dtype, dtype)


def _show(value: Any, limit: int = 200) -> str:
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, str):
        return "String"
    return "Number"


def is_base64_object(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


def _type_error(value: Any, dtype: str) -> TfsError:
    return TfsError(
        f"JSON Value: {_show(value)} Type: {_json_type(value)} is not of expected type: "
        f"{tfs_type_name(dtype)}"
    )


# --- JSON value -> numpy array ---------------------------------------------------------------


def to_array(value: Any, dtype: str) -> Array:
    """A JSON value as an array of `dtype` (TensorFlow's name); TfsError when it cannot be.

    `value` may be a `DenseJson` (numbers read without their lists): its array is what
    `np.asarray` gives the lists, so it takes the same checks; any other kind of tensor walks
    the lists themselves, for the same answer and messages as a parsed value.
    """
    if isinstance(value, DenseJson):
        kind = _DTYPES[dtype][0] if dtype in _DTYPES else ""
        if kind in _FAST_KINDS and value.array.dtype.kind in _FAST_KINDS[kind]:
            return _checked_cast(value.array, dtype, _DTYPES[dtype][1])
        value = value.value()
    if dtype not in _DTYPES:
        raise TfsError(
            f"Conversion of JSON Value: {_show(value)} to type: {dtype} is not supported"
        )
    kind, numpy_type = _DTYPES[dtype]
    if kind != "string":
        try:
            array = np.asarray(value)
        except (ValueError, TypeError, OverflowError):  # ragged lists, odd values
            array = None
        if array is not None and array.dtype.kind in _FAST_KINDS[kind]:
            return _checked_cast(array, dtype, numpy_type)
    return _walk(value, dtype, kind, numpy_type)


def _checked_cast(array: Array, dtype: str, numpy_type: Any) -> Array:
    if array.dtype.kind in "iu" and array.size and np.dtype(numpy_type).kind in "iu":
        limits = np.iinfo(numpy_type)
        low, high = array.min(), array.max()
        if int(low) < limits.min or int(high) > limits.max:
            bad = int(low) if int(low) < limits.min else int(high)
            raise TfsError(f"JSON Value: {bad} is out of range for type: {tfs_type_name(dtype)}")
    return array.astype(numpy_type, copy=False)


def _dense_shape(value: Any) -> list[int]:
    shape: list[int] = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _walk(value: Any, dtype: str, kind: str, numpy_type: Any) -> Array:
    """The exact (slow) conversion: validates every element, with TensorFlow Serving's wording."""
    shape = _dense_shape(value)
    flat: list[Any] = []
    _fill(value, 0, shape, dtype, kind, flat)
    if kind == "string":
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    return np.array(flat, dtype=numpy_type).reshape(shape)


def _fill(value: Any, level: int, shape: list[int], dtype: str, kind: str, flat: list[Any]) -> None:
    rank = len(shape)
    if not isinstance(value, list):
        if level != rank:
            raise TfsError(
                f"JSON Value: {_show(value)} found at incorrect level: {level + 1} in the JSON "
                f"DOM. Expected at level: {rank}"
            )
        flat.append(_leaf(value, dtype, kind))
        return
    if level >= rank:
        raise TfsError(f"Encountered list at unexpected level: {level} expected < {rank}")
    if len(value) != shape[level]:
        raise TfsError(
            f"Encountered list at unexpected size: {len(value)} at level: {level} expected "
            f"size: {shape[level]}"
        )
    for item in value:
        _fill(item, level + 1, shape, dtype, kind, flat)


def _leaf(value: Any, dtype: str, kind: str) -> Any:
    if kind == "string":
        if isinstance(value, str):
            return value.encode("utf-8")
        if isinstance(value, dict):
            return decode_base64(value)
        raise _type_error(value, dtype)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise _type_error(value, dtype)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(value, dtype)
    if kind == "float":
        return value
    if isinstance(value, float):
        raise _type_error(value, dtype)
    limits = np.iinfo(_DTYPES[dtype][1])
    if not limits.min <= value <= limits.max:
        raise TfsError(f"JSON Value: {value} is out of range for type: {tfs_type_name(dtype)}")
    return value


def decode_base64(value: Any) -> bytes:
    if not is_base64_object(value):
        raise TfsError(f"JSON Value: {_show(value)} not formatted correctly for base64 data")
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise TfsError("Unable to base64 decode") from None


# --- predict request -> input arrays ---------------------------------------------------------


def _is_element_object(value: Any) -> bool:
    return isinstance(value, dict) and not is_base64_object(value)


def predict_inputs(request: Any, inputs: dict[str, TensorInfo]) -> tuple[Format, dict[str, Array]]:
    """The request's format and one array per signature input (TensorFlow Serving's rules)."""
    if not inputs:
        raise TfsError("Failed to get input map for signature: the signature has no inputs")
    has_instances = "instances" in request
    has_inputs = "inputs" in request
    if has_instances and has_inputs:
        raise TfsError(
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist"
        )
    if has_instances:
        return "row", _from_instances(request["instances"], inputs)
    if has_inputs:
        return "columnar", _from_inputs(request["inputs"], inputs)
    raise TfsError("Missing 'inputs' or 'instances' key")


def _from_instances(instances: Any, inputs: dict[str, TensorInfo]) -> dict[str, Array]:
    if isinstance(instances, DenseJson):  # a non-empty list of numbers or lists, no objects
        if len(inputs) == 1:
            name = next(iter(inputs))
            return {name: _batch(instances, name, inputs[name])}
        instances = instances.value()  # the message below, with its rules
    if not isinstance(instances, list):
        raise TfsError("Expecting 'instances' to be a list/array")
    if not instances:
        raise TfsError("No values in 'instances' array")
    names = sorted(inputs)
    if not _is_element_object(instances[0]):
        if len(inputs) > 1:
            raise TfsError(
                "instances is a plain list, but expecting list of objects as multiple input "
                f"tensors required as per tensorinfo_map (inputs: {','.join(names)})"
            )
        for index, element in enumerate(instances):
            if _is_element_object(element):
                raise TfsError(f"Expecting value/list but got object at item {index} of input list")
        name = names[0]
        return {name: _batch(instances, name, inputs[name])}
    wanted = set(names)
    for index, element in enumerate(instances):
        if not _is_element_object(element):
            raise TfsError(f"Expecting object but got list at item {index} of input list")
        if set(element) != wanted:
            unknown = sorted(set(element) - wanted)
            if unknown:
                raise TfsError(
                    f"Failed to process element: {index} key: {unknown[0]} of 'instances' list. "
                    f"Error: JSON object: does not have named input: {unknown[0]}"
                )
            raise TfsError(
                f"Failed to process element: {index} of 'instances' list. JSON object: "
                f"{_show(element)} must only have keys: {','.join(names)}"
            )
    return {name: _batch([e[name] for e in instances], name, inputs[name]) for name in names}


def _batch(rows: list[Any] | DenseJson, name: str, info: TensorInfo) -> Array:
    try:
        return to_array(rows, info.dtype)
    except TfsError as error:
        raise TfsError(
            f"Failed to process 'instances' for input: {name}. Error: {error.message}"
        ) from None


def _from_inputs(value: Any, inputs: dict[str, TensorInfo]) -> dict[str, Array]:
    names = sorted(inputs)
    if not isinstance(value, dict) or is_base64_object(value):
        if len(inputs) > 1:
            raise TfsError(
                "inputs is a plain value/list, but expecting an object as multiple input "
                f"tensors required as per tensorinfo_map (inputs: {','.join(names)})"
            )
        return {names[0]: to_array(value, inputs[names[0]].dtype)}
    arrays: dict[str, Array] = {}
    for name in names:
        if name not in value:
            raise TfsError(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = to_array(value[name], inputs[name].dtype)
    return arrays


def check_shapes(arrays: dict[str, Array], inputs: dict[str, TensorInfo], signature: str) -> None:
    """A clear 400 for a shape the signature cannot take, before TensorFlow fails on it."""
    for name, array in arrays.items():
        info = inputs[name]
        if not info.accepts_shape(tuple(array.shape)):
            got = "[" + ",".join(str(dim) for dim in array.shape) + "]"
            raise TfsError(
                f"input '{name}' of signature '{signature}' takes shape {info.shape_text()} "
                f"(-1: any size) but the request gives {got}"
            )


# --- arrays -> JSON text ---------------------------------------------------------------------


def _tokens(array: Array, as_bytes: bool, name: str) -> list[str]:
    """Every element of `array` (row-major) as a JSON token."""
    kind = array.dtype.kind
    flat = array.reshape(-1)
    if kind == "f":
        tokens: list[str] = flat.astype(str).tolist()
        if flat.size and not np.isfinite(flat).all():
            tokens = [_NONFINITE.get(token, token) for token in tokens]
        return tokens
    if kind in "iu":
        return flat.astype(str).tolist()  # type: ignore[no-any-return]
    if kind == "b":
        return ["true" if item else "false" for item in flat.tolist()]
    if kind in "OSU":
        return [_string_token(item, as_bytes) for item in flat.tolist()]
    raise TfsError(f"Failed to write JSON value for tensor {name} of type: {array.dtype}")


def _string_token(item: Any, as_bytes: bool) -> str:
    raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
    if as_bytes:
        return '{"b64": "' + base64.b64encode(raw).decode("ascii") + '"}'
    return json.dumps(raw.decode("utf-8", errors="replace"))


def _nest(tokens: list[str], shape: tuple[int, ...], keep_outer: bool) -> list[str]:
    """Join flat tokens into nested JSON lists; `keep_outer` leaves axis 0 as a list of rows."""
    level = tokens
    stop = 1 if keep_outer else 0
    for axis in range(len(shape) - 1, stop - 1, -1):
        size = shape[axis]
        groups = math.prod(shape[:axis])
        if size == 0:
            level = ["[]"] * groups
        else:
            level = ["[" + ",".join(level[i * size : (i + 1) * size]) + "]" for i in range(groups)]
    return level


def _is_bytes_output(name: str, array: Array) -> bool:
    return name.endswith(BYTES_SUFFIX) and array.dtype.kind in "OS"


def tensor_json(array: Array, name: str = "") -> str:
    """One whole tensor as JSON text (a value or nested lists)."""
    tokens = _tokens(array, _is_bytes_output(name, array), name)
    return _nest(tokens, tuple(array.shape), keep_outer=False)[0]


def _rows(array: Array, name: str) -> list[str]:
    tokens = _tokens(array, _is_bytes_output(name, array), name)
    return _nest(tokens, tuple(array.shape), keep_outer=True)


def render_predict(outputs: dict[str, Array], fmt: Format) -> bytes:
    """`{"predictions": ...}` (row format) or `{"outputs": ...}` (columnar) as TFS writes them."""
    if not outputs:
        raise TfsError("Cannot convert empty tensor map to JSON")
    names = sorted(outputs)
    if fmt == "columnar":
        if len(names) == 1:
            value = tensor_json(outputs[names[0]], names[0])
        else:
            value = _object((name, tensor_json(outputs[name], name)) for name in names)
        return ('{"outputs": ' + value + "}").encode()
    batch = 0
    for name in names:
        shape = outputs[name].shape
        if not shape:
            raise TfsError(f"Tensor name: {name} has no shape information ")
        if shape[0] < 1:
            raise TfsError(f"Tensor name: {name} has invalid batch size: {shape[0]}")
        if batch and shape[0] != batch:
            raise TfsError(
                f"Tensor name: {name} has inconsistent batch size: {shape[0]} expecting: {batch}"
            )
        batch = shape[0]
    if len(names) == 1:
        rows = _rows(outputs[names[0]], names[0])
    else:
        per_output = {name: _rows(outputs[name], name) for name in names}
        rows = [_object((name, per_output[name][i]) for name in names) for i in range(batch)]
    return ('{"predictions": [' + ",".join(rows) + "]}").encode()


def _object(items: Any) -> str:
    return "{" + ",".join(json.dumps(key) + ": " + value for key, value in items) + "}"


def render_classify(labels: list[list[str]], scores: Array | None) -> bytes:
    """`{"results": [[[label, score], ...], ...]}` (a missing score is 0, as in the proto)."""
    rows = []
    for index, row_labels in enumerate(labels):
        if scores is not None:
            values = _tokens(scores[index], False, "scores")
        else:
            values = ["0.0"] * len(row_labels)
        pairs = [
            "[" + json.dumps(label) + "," + value + "]"
            for label, value in zip(row_labels, values, strict=True)
        ]
        rows.append("[" + ",".join(pairs) + "]")
    return ('{"results": [' + ",".join(rows) + "]}").encode()


def render_regress(values: Array) -> bytes:
    """`{"results": [value, ...]}`, one value per example."""
    return (
        '{"results": [' + ",".join(_tokens(values.reshape(-1), False, "outputs")) + "]}"
    ).encode()


# --- classify / regress request -> examples ---------------------------------------------------

Feature = tuple[str, list[Any]]  # ("int64" | "float" | "bytes", values)


def _feature(name: str, content: Any) -> Feature:
    values = content if isinstance(content, list) else [content]
    kind = ""
    out: list[Any] = []
    this: str
    item: Any
    for value in values:
        if (
            value is None
            or isinstance(value, list)
            or (isinstance(value, dict) and not is_base64_object(value))
        ):
            raise TfsError(
                f"Feature: {name} has element with unexpected JSON type: {_json_type(value)}"
            )
        if isinstance(value, bool):
            this, item = "int64", int(value)
        elif isinstance(value, dict):
            this, item = "bytes", decode_base64(value)
        elif isinstance(value, str):
            this, item = "bytes", value.encode("utf-8")
        elif isinstance(value, float):
            this, item = "float", value
        else:
            this, item = "int64", value
            if not -(2**63) <= value < 2**63:
                raise TfsError(f"Feature: {name} has uint64 element. Only int64 is supported.")
        if kind and this != kind:
            raise TfsError(f"Unexpected element type in feature: {name} expecting type: {kind}")
        kind = this
        out.append(item)
    return (kind or "float", out)


def _example(value: Any) -> dict[str, Feature]:
    if not isinstance(value, dict):
        raise TfsError(f"Example must be JSON object but got JSON {_json_type(value)}")
    return {name: _feature(name, content) for name, content in value.items()}


def examples_request(request: Any, method: str) -> list[dict[str, Feature]]:
    """The examples of a classify/regress request, each merged with the shared `context`."""
    context = _example(request["context"]) if "context" in request else {}
    if "examples" not in request:
        raise TfsError(f"When method is {method}, key 'examples' is expected and was not found")
    examples = request["examples"]
    if not isinstance(examples, list):
        raise TfsError("Expecting 'examples' value to be a list/array")
    if not examples:
        raise TfsError("'examples' value is an empty array")
    return [{**context, **_example(example)} for example in examples]
