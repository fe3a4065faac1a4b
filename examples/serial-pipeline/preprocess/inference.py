"""First container of the pipeline: scale the 64 pixel features with the fitted StandardScaler.

Served by polyhost/sklearn (SageMaker's scikit-learn container reads it the same way) from a
model.tar.gz holding `model.joblib` (the scaler) and this script as `code/inference.py`.
Rows come in as text/csv (or a JSON array of rows) and leave as text/csv, the type the next
container reads: the container's SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT is text/csv, because
inside a pipeline the client's Accept header reaches only the last container.
"""

import io
import json
import os

import joblib
import numpy as np

CSV = "text/csv"
JSON = "application/json"


class RequestError(Exception):
    """Answered with `status_code` and `message` (the inference toolkit's error shape)."""

    def __init__(self, status_code, message):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(input_data, content_type):
    media = content_type.split(";")[0].strip()
    try:
        if media == CSV:
            rows = np.loadtxt(io.StringIO(input_data), delimiter=",", ndmin=2)
        elif media == JSON:
            rows = np.asarray(json.loads(input_data), dtype=np.float64)
        else:
            raise RequestError(415, f"send {CSV} or {JSON}, not {content_type}")
    except ValueError as error:
        raise RequestError(400, f"rows of numbers expected: {error}") from None
    if rows.ndim != 2:
        raise RequestError(400, f"rows of numbers expected, got an array of shape {rows.shape}")
    return rows


def predict_fn(input_data, model):
    if input_data.shape[1] != model.n_features_in_:
        raise RequestError(
            400, f"each row needs {model.n_features_in_} values, not {input_data.shape[1]}"
        )
    return model.transform(input_data)


def output_fn(prediction, accept):
    if accept.split(";")[0].strip() == JSON:
        return json.dumps(prediction.tolist()), JSON
    buffer = io.StringIO()
    np.savetxt(buffer, prediction, delimiter=",", fmt="%.6g")
    return buffer.getvalue(), CSV
