"""The scikit-learn stack's default handlers.

- `model_fn`: `model.joblib`, else `model.pkl` / `model.pickle`, else the only `.joblib`, `.pkl`
  or `.pickle` file in the model dir, loaded with joblib. (SageMaker's scikit-learn container
  has no default and insists on a user `model_fn`; a user `model_fn` still takes precedence.)
  Like any pickle, a model file runs code when loaded: serve only models you trust.
- `input_fn`: the toolkit codecs; JSON and CSV numbers become float32 (as SageMaker's), arrays
  of strings stay strings (for text pipelines), sparse .npz stays sparse. Besides a bare JSON
  array of rows, JSON may be `{"instances": rows}` or `{"inputs": rows}` (what clients of TF
  Serving, KServe and the SageMaker Python SDK send; SageMaker's scikit-learn container refuses
  it with a 400).
- `predict_fn`: calls the estimator method chosen, in this order, by the request's custom
  attribute `sklearn-method=NAME` (header X-Amzn-SageMaker-Custom-Attributes), the container's
  environment `POLYHOST_SKLEARN_METHOD`, or `predict`. NAME is one of `METHODS`; a method the
  estimator lacks answers 400.
- `output_fn`: the toolkit codecs, per Accept; a JSON answer to `{"instances"|"inputs": rows}`
  is `{"predictions": [...]}`, to a bare array the bare predictions (as SageMaker's).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import orjson

from polyhost.stacks.toolkit import codecs, fastjson
from polyhost.stacks.toolkit.context import Context, request_attributes
from polyhost.stacks.toolkit.environment import default_accept
from polyhost.stacks.toolkit.handlers import DefaultHandlers
from polyhost.stacks.toolkit.server import InvocationError, InvocationRequest, InvocationResponse

PREFERRED_FILES = ("model.joblib", "model.pkl", "model.pickle")
MODEL_EXTENSIONS = (".joblib", ".pkl", ".pickle")
METHODS = (
    "predict",
    "predict_proba",
    "predict_log_proba",
    "decision_function",
    "transform",
    "score_samples",
)
METHOD_ATTRIBUTE = "sklearn-method"
METHOD_ENV = "POLYHOST_SKLEARN_METHOD"


class ModelLoadError(Exception):
    """The model file exists but cannot be unpickled."""


def model_path(model_dir: str) -> str:
    """The file the default model_fn loads; ValueError naming what was found otherwise."""
    for name in PREFERRED_FILES:
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            return path
    found = sorted(
        name
        for name in os.listdir(model_dir)
        if name.endswith(MODEL_EXTENSIONS) and os.path.isfile(os.path.join(model_dir, name))
    )
    if len(found) != 1:
        raise ValueError(
            "Exactly one model file is required for scikit-learn models: model.joblib, "
            f"model.pkl, or a single .joblib/.pkl/.pickle file (found {found}); or provide a "
            "model_fn in code/inference.py"
        )
    return os.path.join(model_dir, found[0])


def default_model_fn(model_dir: str) -> Any:
    import joblib  # lazily: the server listens before the framework is imported

    path = model_path(model_dir)
    try:
        return joblib.load(path)
    except Exception as error:  # joblib's own messages ("pop from empty list") say little
        raise ModelLoadError(
            f"Failed to load {path}: {type(error).__name__}: {error}. Save the model with "
            "joblib.dump or pickle.dump, with the scikit-learn version this stack runs."
        ) from error


def default_input_fn(
    input_data: bytes | str, content_type: str, context: Context | None = None
) -> Any:
    """The body as an array; the context remembers an enveloped request for `output_fn`."""
    data = codecs.decode_instances(input_data, content_type, context)
    if isinstance(data, dict):
        raise InvocationError(
            400,
            f"The .npz body holds several arrays ({', '.join(sorted(data))}); the default "
            "input_fn takes one. Send one array or write an input_fn.",
        )
    if codecs.media_type(content_type) in codecs.UTF8_TYPES and data.dtype.kind not in "US":
        return data.astype("float32")
    return data


def method_name(context: Context | None) -> str:
    """The estimator method a request asks for (see the module docstring)."""
    requested = request_attributes(context).get(METHOD_ATTRIBUTE) if context else None
    name = requested or os.environ.get(METHOD_ENV) or "predict"
    if name not in METHODS:
        raise InvocationError(
            400, f"Unknown {METHOD_ATTRIBUTE} {name!r}; use one of: {', '.join(METHODS)}."
        )
    return name


def default_predict_fn(data: Any, model: Any, context: Context | None = None) -> Any:
    name = method_name(context)
    method = getattr(model, name, None)
    if method is None:
        raise InvocationError(400, f"The model ({type(model).__name__}) has no {name} method.")
    try:
        return method(data)
    except (TypeError, ValueError) as error:
        # Text where a numeric model needs numbers is the caller's error (400, naming the
        # field); a text pipeline takes strings and never gets here unless it fails itself.
        kind = getattr(getattr(data, "dtype", None), "kind", "")
        if kind in ("U", "S", "O") and codecs.first_non_number(data) is not None:
            raise codecs.not_numbers("request", data, f"the model said: {error}") from None
        raise


def default_output_fn(
    prediction: Any, accept: str, context: Context | None = None
) -> tuple[bytes, str]:
    """Encode per Accept (406 when none is known), in the envelope the request came in."""
    return codecs.encode_in_kind(prediction, accept, default_accept(), context)


def _fast_rows(body: bytes) -> tuple[Any, bool] | None:
    """(rows as float32, enveloped) for what default_input_fn takes without a word; else None.

    Only orjson's answer is taken (never the stdlib's, which would also read UTF-16 bytes).
    """
    dense = fastjson.read_document(body, codecs.ENVELOPE_KEYS)
    if dense is not None:
        return dense[1].array.astype("float32"), dense[0] is not None
    if not fastjson.orjson_safe(body):
        return None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    enveloped = isinstance(document, dict)
    if enveloped:
        if len(document) != 1:
            return None
        key, document = next(iter(document.items()))
        if key not in codecs.ENVELOPE_KEYS or not isinstance(document, list) or not document:
            return None
    try:
        rows = np.asarray(document)
    except ValueError:
        return None
    if rows.dtype.kind not in "biuf":  # strings keep their dtype; objects answer a 400
        return None
    return rows.astype("float32"), enveloped


def fast_path(model: Any, request: InvocationRequest, accept: str) -> InvocationResponse | None:
    """The default handlers' answer to a plain JSON request, without the chain's overhead.

    A one-row request costs the model about 150 µs; the chain around it (a context, three
    handler calls, the codecs' type negotiation) added some 25 µs more, a sixth of the
    request. Taken for JSON in and out (`application/json` Content-Type, or none, and an Accept
    that is `application/json` once defaulted), no custom attributes and a valid method of the
    model; the body parsed as `default_input_fn` does and the answer encoded as
    `default_output_fn` does. Everything else returns None and takes the chain.
    """
    if accept != codecs.JSON or request.custom_attributes is not None:
        return None
    if request.content_type is not None and codecs.media_type(request.content_type) != codecs.JSON:
        return None
    name = os.environ.get(METHOD_ENV) or "predict"
    method = getattr(model, name, None) if name in METHODS else None
    if method is None or not request.body:
        return None
    found = _fast_rows(request.body)
    if found is None:
        return None
    rows, enveloped = found
    prediction = method(rows)
    value = prediction.tolist() if isinstance(prediction, np.ndarray) else prediction
    try:
        payload = json.dumps(
            {codecs.PREDICTIONS: value} if enveloped else value, default=codecs.json_default
        )
    except (TypeError, ValueError):
        return None  # the chain words the error
    return InvocationResponse(body=payload.encode("utf-8"), content_type=codecs.JSON)


DEFAULTS = DefaultHandlers(
    model_fn=default_model_fn,
    input_fn=default_input_fn,
    predict_fn=default_predict_fn,
    output_fn=default_output_fn,
    fast_path=fast_path,
)
