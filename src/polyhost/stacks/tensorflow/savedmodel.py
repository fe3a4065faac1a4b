"""Load a SavedModel with TensorFlow and run its signatures: the one module importing TensorFlow.

The service imports this module inside `load()`, so the process answers `/ping` (503, loading)
within milliseconds and spends TensorFlow's multi-second import in the background.

A model is loaded with `tf.saved_model.load(path, tags=["serve"])` (what TensorFlow Serving
loads); each signature is a concrete function called with keyword tensors converted to the
signature's dtypes. Signatures' method names (predict/classify/regress) are not kept by the
loader, so they are read from `saved_model.pb` the first time a classify or regress request asks.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from polyhost.stacks.tensorflow.config import StackConfig
from polyhost.stacks.tensorflow.errors import TfsError
from polyhost.stacks.tensorflow.jsontensor import Array, Feature, TensorInfo

log = logging.getLogger("polyhost.stack.tensorflow")

SERVE_TAG = "serve"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


_configured = False


def configure(config: StackConfig) -> None:
    """Thread pools and Python-side logging; must run before TensorFlow executes anything.

    Once per process: a multi-model container loads many models, and TensorFlow refuses to
    change its thread pools once it has run (every later load would log that refusal)."""
    global _configured
    if _configured:
        return
    _configured = True
    try:
        tf.config.threading.set_intra_op_parallelism_threads(config.intra_op_threads)
        tf.config.threading.set_inter_op_parallelism_threads(config.inter_op_threads)
    except RuntimeError as error:  # inference.py ran TensorFlow ops when it was imported
        log.warning("TensorFlow thread pools left as they are: %s", error)
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip()
    if level.isdigit() and int(level) >= 2:
        tf.get_logger().setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.WARNING)  # "Fingerprint not found" etc.


def _info(spec: Any) -> TensorInfo:
    shape = spec.shape
    dims = None if shape.rank is None else tuple(shape.as_list())
    return TensorInfo(dtype=spec.dtype.name, shape=dims)


@dataclass(frozen=True)
class Signature:
    name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]
    function: Any


def _status_for(error: Exception) -> int:
    """TensorFlow Serving's HTTP status for a TensorFlow error code."""
    if isinstance(
        error,
        tf.errors.InvalidArgumentError
        | tf.errors.FailedPreconditionError
        | tf.errors.OutOfRangeError,
    ):
        return 400
    if isinstance(error, tf.errors.NotFoundError):
        return 404
    return 500


_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\](\s*name: \S*)?\s*$")


def clean_message(message: str) -> str:
    """TensorFlow's message without the graph-construction trace and op names it appends."""
    kept: list[str] = []
    in_trace = False
    for line in message.splitlines():
        text = line.strip()
        if not text or text == "Graph execution error:":
            continue
        if text.startswith("Detected at node"):
            in_trace = True
            continue
        if in_trace and (
            line[:1] in (" ", "\t") or text.startswith("File ") or text.startswith("<stack")
        ):
            continue
        in_trace = False
        if text.startswith("[["):  # "[[{{node MatMul}}]] [Op:__inference_...]"
            continue
        kept.append(text)
    return _OP_SUFFIX.sub("", " ".join(kept)).strip() or message.strip()


class SavedModel:
    """One version of one model, loaded and ready to run."""

    def __init__(self, name: str, version: int, path: Path, loaded: Any) -> None:
        self.name = name
        self.version = version
        self.path = path
        self._loaded = loaded  # keeps variables alive for the functions below
        self.signatures: dict[str, Signature] = {}
        for key, function in loaded.signatures.items():
            inputs = function.structured_input_signature[1]
            outputs = function.structured_outputs
            self.signatures[key] = Signature(
                name=key,
                inputs={name: _info(spec) for name, spec in inputs.items()},
                outputs={name: _info(spec) for name, spec in outputs.items()},
                function=function,
            )
        self._methods: dict[str, str] | None = None
        self._lock = threading.Lock()

    def signature(self, name: str) -> Signature:
        try:
            return self.signatures[name]
        except KeyError:
            known = ", ".join(sorted(self.signatures)) or "none"
            raise TfsError(
                f'Serving signature name: "{name}" not found in signature def (this model has: '
                f"{known})"
            ) from None

    def method_name(self, signature: str) -> str:
        with self._lock:
            if self._methods is None:
                self._methods = _read_method_names(self.path)
        return self._methods.get(signature, PREDICT_METHOD)

    def run(self, signature: Signature, arrays: dict[str, Array]) -> dict[str, Array]:
        """Call the signature; TensorFlow's own failures become TensorFlow Serving's errors."""
        try:
            tensors = {
                name: _tensor(array, signature.inputs[name].dtype) for name, array in arrays.items()
            }
            results = signature.function(**tensors)
        except tf.errors.OpError as error:
            raise TfsError(clean_message(error.message), _status_for(error)) from None
        except (TypeError, ValueError) as error:  # arguments the function cannot take
            raise TfsError(clean_message(str(error))) from None
        return {name: _numpy(tensor) for name, tensor in results.items()}

    def metadata(self) -> dict[str, Any]:
        """TensorFlow Serving's GetModelMetadata answer (its JSON form)."""
        signature_defs = {
            key: {
                "inputs": {n: _tensor_info_json(n, info) for n, info in sig.inputs.items()},
                "outputs": {n: _tensor_info_json(n, info) for n, info in sig.outputs.items()},
                "method_name": self.method_name(key),
            }
            for key, sig in self.signatures.items()
        }
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
            "metadata": {"signature_def": {"signature_def": signature_defs}},
        }


def _tensor(array: Array, dtype: str) -> Any:
    target = tf.as_dtype(dtype)
    if array.dtype == object:
        return tf.constant(array, dtype=tf.string) if target == tf.string else tf.constant(array)
    tensor = tf.constant(array)
    return tensor if tensor.dtype == target else tf.cast(tensor, target)


def _numpy(tensor: Any) -> Array:
    if tensor.dtype == tf.bfloat16:  # numpy cannot print bfloat16: widen it
        tensor = tf.cast(tensor, tf.float32)
    return np.asarray(tensor.numpy())


def _tensor_info_json(name: str, info: TensorInfo) -> dict[str, Any]:
    enum = tf.as_dtype(info.dtype).as_datatype_enum
    from tensorflow.core.framework import types_pb2

    shape: dict[str, Any] = {"dim": [], "unknown_rank": info.shape is None}
    for dim in info.shape or ():
        shape["dim"].append({"size": str(-1 if dim is None else dim), "name": ""})
    return {"dtype": types_pb2.DataType.Name(enum), "tensor_shape": shape, "name": name}


def _read_method_names(path: Path) -> dict[str, str]:
    from google.protobuf import text_format  # type: ignore[import-untyped]
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    binary = path / "saved_model.pb"
    if binary.is_file():
        proto.ParseFromString(binary.read_bytes())
    else:
        text_format.Parse((path / "saved_model.pbtxt").read_text(encoding="utf-8"), proto)
    for meta_graph in proto.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return {key: sig.method_name for key, sig in meta_graph.signature_def.items()}
    return {}


def serialize_examples(examples: list[dict[str, Feature]]) -> Array:
    """tf.train.Example protos, serialized: what classify/regress signatures take."""
    serialized = np.empty(len(examples), dtype=object)
    for index, features in enumerate(examples):
        proto = tf.train.Example()
        feature_map = proto.features.feature
        for name, (kind, values) in features.items():
            if kind == "bytes":
                feature_map[name].bytes_list.value.extend(values)
            elif kind == "int64":
                feature_map[name].int64_list.value.extend(values)
            else:
                feature_map[name].float_list.value.extend(values)
        serialized[index] = proto.SerializeToString()
    return serialized


def load(name: str, version: int, path: Path) -> SavedModel:
    loaded = tf.saved_model.load(str(path), tags=[SERVE_TAG])
    model = SavedModel(name, version, path, loaded)
    log.info(
        "loaded model %s version %d from %s (signatures: %s)",
        name,
        version,
        path,
        ", ".join(sorted(model.signatures)) or "none",
    )
    return model
