"""Last container of the pipeline: turn predicted class numbers into label names.

Served by polyhost/sklearn from a model.tar.gz holding `labels.json` (the names, in class
order) and this script as `code/inference.py`. It receives the model container's text/csv
answer (one class number per line) and answers what the client's Accept asks for:
application/json (a list of names, the default) or text/csv (one name per line).
"""

import io
import json
import os

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
    with open(os.path.join(model_dir, "labels.json"), encoding="utf-8") as handle:
        return json.load(handle)


def input_fn(input_data, content_type):
    media = content_type.split(";")[0].strip()
    try:
        if media == CSV:
            classes = np.loadtxt(io.StringIO(input_data), delimiter=",", ndmin=1)
        elif media == JSON:
            classes = np.asarray(json.loads(input_data))
        else:
            raise RequestError(415, f"send {CSV} or {JSON}, not {content_type}")
    except ValueError as error:
        raise RequestError(400, f"class numbers expected: {error}") from None
    return classes.reshape(-1).astype(int)


def predict_fn(classes, labels):
    if classes.size and (classes.min() < 0 or classes.max() >= len(labels)):
        raise RequestError(400, f"class numbers must be in 0..{len(labels) - 1}")
    return [labels[number] for number in classes]


def output_fn(names, accept):
    if accept.split(";")[0].strip() == CSV:
        return "".join(f"{name}\n" for name in names), CSV
    return json.dumps(names), JSON
