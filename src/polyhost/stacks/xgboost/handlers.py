"""The XGBoost stack's default handlers, as SageMaker's XGBoost container serves a model.

- `model_fn`: `xgboost-model` in the model dir (else its only file), a Booster saved with
  `save_model` (JSON, UBJSON or the old binary format) or pickled (a Booster, or a scikit-learn
  wrapper such as `XGBClassifier`, whose Booster is served). A pickle runs code when loaded:
  serve only models you trust.
- `input_fn`: text/csv, text/libsvm, application/json and application/x-recordio-protobuf
  (`payloads`); a body that cannot be read answers 400 naming the row and column.
- `predict_fn`: the Booster's raw prediction (`predict` with `validate_features=False`, as
  SageMaker's container: a CSV row has no feature names), up to the best iteration when the
  model was trained with early stopping. Rows of another width than the model's features
  answer 400.
- `output_fn`: per Accept, as SageMaker's XGBoost algorithm answers: `text/csv` is the scores
  comma-separated on one line (one line per row when each row has several, as for
  `multi:softprob`), `application/json` is `{"predictions": [{"score": ...}, ...]}`. A missing
  or `*/*` Accept means SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT, else text/csv.

xgboost is imported on first use, never at module import, so the server listens first. It runs
on half the cores (at least one) unless POLYHOST_XGBOOST_THREADS or OMP_NUM_THREADS says
otherwise: an endpoint's containers share the machine.
"""

from __future__ import annotations

import json
import os
import pickle
from typing import Any

import numpy as np

from polyhost.stacks.toolkit import codecs
from polyhost.stacks.toolkit.handlers import DefaultHandlers
from polyhost.stacks.toolkit.server import InvocationError
from polyhost.stacks.xgboost import payloads

MODEL_FILE = "xgboost-model"
DEFAULT_ACCEPT = payloads.CSV
ACCEPTS = (payloads.CSV, payloads.JSON)


class ModelLoadError(Exception):
    """The model file is neither a saved Booster nor a pickled one."""


def _xgboost() -> Any:
    import xgboost

    return xgboost


def model_path(model_dir: str) -> str:
    """`xgboost-model`, else the only (non-hidden) file in the model dir; ValueError otherwise."""
    path = os.path.join(model_dir, MODEL_FILE)
    if os.path.isfile(path):
        return path
    found = sorted(
        name
        for name in os.listdir(model_dir)
        if not name.startswith(".") and os.path.isfile(os.path.join(model_dir, name))
    )
    if len(found) != 1:
        raise ValueError(
            f"The XGBoost model file must be named {MODEL_FILE} (or be the only file in the "
            f"model archive); found {found}. Or provide a model_fn in code/inference.py"
        )
    return os.path.join(model_dir, found[0])


def threads() -> int:
    for name in ("POLYHOST_XGBOOST_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return max(1, (os.cpu_count() or 1) // 2)


def _unpickle(path: str) -> Any:
    xgb = _xgboost()
    with open(path, "rb") as handle:
        model = pickle.load(handle)  # the model is the user's own
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    if not isinstance(booster, xgb.Booster):
        raise ModelLoadError(
            f"{path} holds a pickled {type(model).__name__}, not an XGBoost Booster"
        )
    return booster


def default_model_fn(model_dir: str) -> Any:
    xgb = _xgboost()
    path = model_path(model_dir)
    with open(path, "rb") as handle:
        pickled = handle.read(1) == b"\x80"  # pickle's protocol opcode (protocols 2 and up)
    if pickled:
        booster = _unpickle(path)
    else:
        booster = xgb.Booster()
        try:
            booster.load_model(path)
        except Exception as saved_error:  # XGBoostError, or its own UnicodeDecodeError
            try:
                booster = _unpickle(path)
            except ModelLoadError:
                raise
            except Exception as error:
                reason = str(saved_error).strip().splitlines()
                raise ModelLoadError(
                    f"Failed to load {path}: it is neither a model saved with "
                    f"Booster.save_model ({reason[-1] if reason else type(saved_error).__name__})"
                    f" nor a pickle ({type(error).__name__}: {error})"
                ) from error
    booster.set_param({"nthread": threads()})
    return booster


def default_input_fn(input_data: bytes | str, content_type: str) -> Any:
    return payloads.decode(input_data, content_type)


def _fit_width(data: Any, booster: Any) -> Any:
    """Sparse rows widened to the model's features; 400 for rows of another width."""
    expected = int(booster.num_features())
    width = int(data.shape[1])
    if expected <= 0 or width == expected:
        return data
    if hasattr(data, "tocsr") and width < expected:
        data = data.tocsr(copy=True)
        data.resize((data.shape[0], expected))
        return data
    raise InvocationError(
        400,
        f"The request's rows have {width} columns; the model takes {expected} features "
        "(send them without a header or label column).",
    )


def default_predict_fn(data: Any, model: Any) -> Any:
    xgb = _xgboost()
    if hasattr(data, "toarray") or isinstance(data, np.ndarray):
        data = _fit_width(data, model)
    best = model.attr("best_iteration")
    options: dict[str, Any] = {"validate_features": False}
    if best is not None:
        options["iteration_range"] = (0, int(best) + 1)
    try:
        return model.inplace_predict(data, **options)
    except (xgb.core.XGBoostError, TypeError, ValueError):
        # Boosters inplace_predict does not take (gblinear) and inputs it does not know.
        matrix = data if isinstance(data, xgb.DMatrix) else xgb.DMatrix(data, missing=np.nan)
        return model.predict(matrix, **options)


def _scores(prediction: Any) -> list[Any]:
    value = prediction.tolist() if hasattr(prediction, "tolist") else list(prediction)
    return value if isinstance(value, list) else [value]


def encode(prediction: Any, accept: str) -> tuple[bytes, str]:
    """Scores as SageMaker's XGBoost container writes them (see the module docstring)."""
    for media in codecs.parse_accept(accept):
        if media == codecs.ANY:
            media = codecs.media_type(DEFAULT_ACCEPT)
        scores = _scores(prediction)
        if media == payloads.CSV:
            if scores and isinstance(scores[0], list):
                text = "\n".join(",".join(map(str, row)) for row in scores)
            else:
                text = ",".join(map(str, scores))
            return text.encode("utf-8"), payloads.CSV
        if media == payloads.JSON:
            document = {"predictions": [{"score": score} for score in scores]}
            return json.dumps(document).encode("utf-8"), payloads.JSON
    raise InvocationError(
        406,
        f"Accept type {accept} is not supported by the XGBoost container. Supported: "
        f"{', '.join(ACCEPTS)}. Please implement an output_fn to serialize the response.",
    )


def default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    return encode(prediction, accept)


DEFAULTS = DefaultHandlers(
    model_fn=default_model_fn,
    input_fn=default_input_fn,
    predict_fn=default_predict_fn,
    output_fn=default_output_fn,
)
