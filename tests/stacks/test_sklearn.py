"""`polyhost/sklearn` as a program: tiny real models, every codec, handler overrides, failures."""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import scipy.sparse
from sklearn.datasets import load_digits
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from polyhost.stacks.toolkit import codecs
from polyhost.stacks.toolkit.handlers import TRANSFORM_CONFLICT
from tests.stacks.conftest import StackProcess, start_all, stop_all

MODULE = "polyhost.stacks.sklearn"
METHOD = "X-Amzn-SageMaker-Custom-Attributes"

MODEL_FN_ONLY = """
import os
import joblib

def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "custom", "estimator.bin"))
"""

HANDLERS = """
import json
import numpy as np

def input_fn(body, content_type, context):
    if content_type != "application/json":
        raise ValueError("this model takes JSON only")
    return np.asarray(json.loads(body)["features"], dtype=np.float64)

def predict_fn(data, model, context):
    return model.predict_proba(data)

def output_fn(prediction, accept, context):
    labels = prediction.argmax(axis=1).tolist()
    tag = context.get_request_header(0, "X-Amzn-SageMaker-Custom-Attributes")
    return json.dumps({"labels": labels, "confidence": prediction.max(axis=1).tolist(),
                       "tag": tag}), "application/json"
"""

TRANSFORM = """
import numpy as np

def transform_fn(model, body, content_type, accept):
    rows = np.array([[float(v) for v in line.split()] for line in body.decode().splitlines()])
    return "|".join(str(label) for label in model.predict(rows))
"""

CONFLICT = """
def transform_fn(model, body, content_type, accept):
    return body

def output_fn(prediction, accept):
    return prediction
"""

# Default input_fn and output_fn around the user's: the envelope never reaches predict_fn, and a
# user's output_fn answers as it likes.
PREDICT_ONLY = """
import numpy as np

def predict_fn(data, model):
    if type(data) is not np.ndarray:
        raise TypeError(f"predict_fn was given a {type(data).__name__}")
    return model.predict(data) * 10
"""

OUTPUT_ONLY = """
import json

def output_fn(prediction, accept):
    return json.dumps({"labels": prediction.tolist()}), "application/json"
"""

MODEL_FN_FAILS = """
def model_fn(model_dir):
    raise FileNotFoundError("estimator.bin is missing from the archive")
"""


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    features, labels = load_digits(return_X_y=True)
    return features, labels


@pytest.fixture(scope="module")
def model(digits: tuple[np.ndarray, np.ndarray]) -> LogisticRegression:
    features, labels = digits
    return LogisticRegression(max_iter=300).fit(features[:600], labels[:600])


@pytest.fixture(scope="module")
def text_model() -> Any:
    texts = ["win money now", "cheap pills win", "meeting at noon", "see you at lunch"]
    return make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, [1, 1, 0, 0])


def _model_dir(base: Path, name: str, script: str | None = None) -> Path:
    folder = base / name
    folder.mkdir()
    if script is not None:
        (folder / "code").mkdir()
        (folder / "code" / "inference.py").write_text(script)
    return folder


@pytest.fixture(scope="module")
def stacks(
    tmp_path_factory: pytest.TempPathFactory, model: LogisticRegression, text_model: Any
) -> Iterator[dict[str, StackProcess]]:
    base = tmp_path_factory.mktemp("sklearn")
    default = _model_dir(base, "default")
    joblib.dump(model, default / "model.joblib")
    pickled = _model_dir(base, "pickled")
    (pickled / "model.pkl").write_bytes(pickle.dumps(model))
    single = _model_dir(base, "single")
    joblib.dump(text_model, single / "spam-filter.joblib")
    custom = _model_dir(base, "custom", MODEL_FN_ONLY)
    (custom / "custom").mkdir()
    joblib.dump(model, custom / "custom" / "estimator.bin")
    handlers = _model_dir(base, "handlers", HANDLERS)
    joblib.dump(model, handlers / "model.joblib")
    transform = _model_dir(base, "transform", TRANSFORM)
    joblib.dump(model, transform / "model.joblib")
    predict_only = _model_dir(base, "predict_only", PREDICT_ONLY)
    joblib.dump(model, predict_only / "model.joblib")
    output_only = _model_dir(base, "output_only", OUTPUT_ONLY)
    joblib.dump(model, output_only / "model.joblib")
    running = {
        "default": StackProcess(MODULE, default),
        "pickled": StackProcess(
            MODULE,
            pickled,
            env={
                "POLYHOST_SKLEARN_METHOD": "predict_proba",
                "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/csv",
            },
        ),
        "single": StackProcess(MODULE, single),
        "custom": StackProcess(MODULE, custom),
        "handlers": StackProcess(MODULE, handlers),
        "transform": StackProcess(MODULE, transform),
        "predict_only": StackProcess(MODULE, predict_only),
        "output_only": StackProcess(MODULE, output_only),
    }
    start_all(running)
    yield running
    stop_all(running.values())


def _encoded(array: np.ndarray, content_type: str) -> bytes:
    if content_type == codecs.CSV:
        return "\n".join(",".join(str(int(v)) for v in row) for row in array).encode()
    return codecs.encode(array, content_type)


@pytest.mark.parametrize("content_type", codecs.SUPPORTED)
@pytest.mark.parametrize("accept", codecs.SUPPORTED)
def test_predict_every_content_type_both_ways(
    stacks: dict[str, StackProcess],
    digits: tuple[np.ndarray, np.ndarray],
    model: LogisticRegression,
    content_type: str,
    accept: str,
) -> None:
    rows = digits[0][1000:1006]
    answer = stacks["default"].invoke(_encoded(rows, content_type), content_type, accept)
    assert answer.status == 200, answer.body
    assert answer.content_type == accept
    predicted = np.asarray(codecs.decode(answer.body, accept)).reshape(-1)
    assert predicted.tolist() == model.predict(rows).tolist()


def test_sparse_npz_input(
    stacks: dict[str, StackProcess], digits: tuple[np.ndarray, np.ndarray], model: Any
) -> None:
    rows = digits[0][1000:1004]
    buffer = io.BytesIO()
    scipy.sparse.save_npz(buffer, scipy.sparse.csr_matrix(rows))
    answer = stacks["default"].invoke(buffer.getvalue(), codecs.NPZ)
    assert answer.status == 200, answer.body
    assert answer.json() == model.predict(rows).tolist()


def test_predict_proba_on_request(
    stacks: dict[str, StackProcess], digits: tuple[np.ndarray, np.ndarray], model: Any
) -> None:
    rows = digits[0][1000:1003]
    answer = stacks["default"].invoke(
        json.dumps(rows.tolist()), headers={METHOD: "sklearn-method=predict_proba"}
    )
    assert answer.status == 200, answer.body
    np.testing.assert_allclose(answer.json(), model.predict_proba(rows), rtol=1e-6, atol=1e-9)
    scores = stacks["default"].invoke(
        json.dumps(rows.tolist()), headers={METHOD: "trace=7, sklearn-method=decision_function"}
    )
    assert np.asarray(scores.json()).shape == (3, 10)


def test_method_from_environment_and_default_accept(
    stacks: dict[str, StackProcess], digits: tuple[np.ndarray, np.ndarray], model: Any
) -> None:
    rows = digits[0][1000:1002]
    answer = stacks["pickled"].invoke(json.dumps(rows.tolist()))  # no Accept: text/csv here
    assert answer.status == 200 and answer.content_type == codecs.CSV
    probabilities = np.loadtxt(io.StringIO(answer.body.decode()), delimiter=",")
    np.testing.assert_allclose(probabilities, model.predict_proba(rows), rtol=1e-5, atol=1e-8)
    labels = stacks["pickled"].invoke(
        json.dumps(rows.tolist()), accept=codecs.JSON, headers={METHOD: "sklearn-method=predict"}
    )
    assert labels.json() == model.predict(rows).tolist()


def test_single_model_file_with_text_pipeline(stacks: dict[str, StackProcess]) -> None:
    answer = stacks["single"].invoke(json.dumps(["win cheap money", "lunch meeting at noon"]))
    assert answer.status == 200, answer.body
    assert answer.json() == [1, 0]


def test_model_fn_only_override(
    stacks: dict[str, StackProcess], digits: tuple[np.ndarray, np.ndarray], model: Any
) -> None:
    rows = digits[0][1100:1104]
    answer = stacks["custom"].invoke(_encoded(rows, codecs.CSV), codecs.CSV)
    assert answer.status == 200, answer.body
    assert answer.json() == model.predict(rows).tolist()


def test_input_predict_output_overrides_with_context(
    stacks: dict[str, StackProcess], digits: tuple[np.ndarray, np.ndarray], model: Any
) -> None:
    rows = digits[0][1200:1203]
    answer = stacks["handlers"].invoke(
        json.dumps({"features": rows.tolist()}), headers={METHOD: "request=42"}
    )
    assert answer.status == 200, answer.body
    result = answer.json()
    assert result["labels"] == model.predict(rows).tolist()
    assert result["tag"] == "request=42"
    refused = stacks["handlers"].invoke(_encoded(rows, codecs.CSV), codecs.CSV)
    assert refused.status == 500
    assert refused.json() == {"message": "ValueError: this model takes JSON only"}


def test_transform_fn_override(
    stacks: dict[str, StackProcess], digits: tuple[np.ndarray, np.ndarray], model: Any
) -> None:
    rows = digits[0][1300:1302]
    body = "\n".join(" ".join(str(v) for v in row) for row in rows)
    answer = stacks["transform"].invoke(body, "application/x-whitespace", accept="text/plain")
    assert answer.status == 200 and answer.content_type == "text/plain"
    assert answer.body.decode() == "|".join(str(v) for v in model.predict(rows))


def test_refusals(stacks: dict[str, StackProcess]) -> None:
    default = stacks["default"]
    assert default.invoke(b"1 2 3", "text/plain").status == 415
    bad_json = default.invoke(b"[[1, 2", codecs.JSON)
    assert bad_json.status == 400 and "not valid JSON" in bad_json.json()["message"]
    unknown = default.invoke(b"[[1]]", headers={METHOD: "sklearn-method=fit"})
    assert unknown.status == 400 and "Unknown sklearn-method 'fit'" in unknown.json()["message"]
    lacking = default.invoke(b"[[1]]", headers={METHOD: "sklearn-method=transform"})
    assert lacking.status == 400
    assert lacking.json() == {"message": "The model (LogisticRegression) has no transform method."}
    unacceptable = default.invoke(json.dumps([[0] * 64]), accept="image/png")
    assert unacceptable.status == 406
    ragged = default.invoke(json.dumps({"instances": [[1.0, 2.0], [3.0]]}))
    assert ragged.status == 400
    assert ragged.json()["message"].startswith("The application/json body is not a rectangular")
    enveloped_406 = default.invoke(json.dumps({"instances": [[0] * 64]}), accept="image/png")
    assert enveloped_406.status == 406


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_enveloped_rows_answer_predictions(
    stacks: dict[str, StackProcess], digits: tuple[np.ndarray, np.ndarray], model: Any, key: str
) -> None:
    rows = digits[0][1000:1004]
    answer = stacks["default"].invoke(json.dumps({key: rows.tolist()}))
    assert answer.status == 200, answer.body
    assert answer.content_type == codecs.JSON
    assert answer.json() == {"predictions": model.predict(rows).tolist()}
    proba = stacks["default"].invoke(
        json.dumps({key: rows.tolist()}), headers={METHOD: "sklearn-method=predict_proba"}
    )
    assert list(proba.json()) == ["predictions"]
    np.testing.assert_allclose(
        proba.json()["predictions"], model.predict_proba(rows), rtol=1e-6, atol=1e-9
    )


def test_bare_array_answers_bare_predictions(
    stacks: dict[str, StackProcess], digits: tuple[np.ndarray, np.ndarray], model: Any
) -> None:
    rows = digits[0][1000:1004]
    answer = stacks["default"].invoke(json.dumps(rows.tolist()))
    assert answer.status == 200, answer.body
    assert answer.json() == model.predict(rows).tolist()
    words = stacks["single"].invoke(json.dumps({"instances": ["win cheap money", "see you"]}))
    assert words.json() == {"predictions": [1, 0]}


def test_envelope_is_json_only(
    stacks: dict[str, StackProcess], digits: tuple[np.ndarray, np.ndarray], model: Any
) -> None:
    """CSV and NPY answers have no envelope, also when they are the container's default Accept;
    a CSV request is never answered in one."""
    rows = digits[0][1000:1003]
    enveloped = json.dumps({"instances": rows.tolist()})
    as_csv = stacks["default"].invoke(enveloped, accept=codecs.CSV)
    assert as_csv.status == 200 and as_csv.content_type == codecs.CSV
    assert as_csv.body.decode() == "".join(f"{label}\n" for label in model.predict(rows))
    as_npy = stacks["default"].invoke(enveloped, accept=codecs.NPY)
    assert np.load(io.BytesIO(as_npy.body)).tolist() == model.predict(rows).tolist()
    defaulted = stacks["pickled"].invoke(enveloped)  # its default Accept is text/csv
    assert defaulted.content_type == codecs.CSV
    probabilities = np.loadtxt(io.StringIO(defaulted.body.decode()), delimiter=",")
    np.testing.assert_allclose(probabilities, model.predict_proba(rows), rtol=1e-5, atol=1e-8)
    from_csv = stacks["default"].invoke(_encoded(rows, codecs.CSV), codecs.CSV, codecs.JSON)
    assert from_csv.json() == model.predict(rows).tolist()


def test_envelope_with_user_handlers(
    stacks: dict[str, StackProcess], digits: tuple[np.ndarray, np.ndarray], model: Any
) -> None:
    rows = digits[0][1000:1003]
    enveloped = json.dumps({"inputs": rows.tolist()})
    predicted = stacks["predict_only"].invoke(enveloped)
    assert predicted.status == 200, predicted.body
    assert predicted.json() == {"predictions": (model.predict(rows) * 10).tolist()}
    assert stacks["predict_only"].invoke(json.dumps(rows.tolist())).json() == (
        (model.predict(rows) * 10).tolist()
    )
    own_answer = stacks["output_only"].invoke(enveloped)
    assert own_answer.json() == {"labels": model.predict(rows).tolist()}
    own_input = stacks["handlers"].invoke(json.dumps({"instances": rows.tolist()}))
    assert own_input.status == 500 and own_input.json() == {"message": "KeyError: 'features'"}


ACCEPTED = (
    'Send a JSON array of rows (e.g. [[1.0, 2.0]]), {"instances": rows} or {"inputs": rows}, '
    "or write an input_fn to accept other shapes."
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"rows": [[1.0]]},
            'The application/json body is a JSON object without "instances" or "inputs" '
            f'(it has "rows"). {ACCEPTED}',
        ),
        (
            {},
            'The application/json body is a JSON object without "instances" or "inputs" '
            f"(it has no keys). {ACCEPTED}",
        ),
        (
            {"instances": [[1.0]], "inputs": [[1.0]]},
            'The application/json body has both "instances" and "inputs"; send the rows under '
            f"one of them. {ACCEPTED}",
        ),
        (
            {"instances": [[1.0]], "signature_name": "serving_default"},
            f'The application/json body has keys besides "instances": "signature_name". {ACCEPTED}',
        ),
        (
            {"instances": {"pixels": [1.0]}},
            'The "instances" of the application/json body is a JSON object, not a list of '
            f'instances (e.g. {{"instances": [[1.0, 2.0]]}}). {ACCEPTED}',
        ),
        (
            {"inputs": 3},
            'The "inputs" of the application/json body is a number, not a list of instances '
            f'(e.g. {{"inputs": [[1.0, 2.0]]}}). {ACCEPTED}',
        ),
        (
            {"inputs": "1,2,3"},
            'The "inputs" of the application/json body is a string, not a list of instances '
            f'(e.g. {{"inputs": [[1.0, 2.0]]}}). {ACCEPTED}',
        ),
        (
            {"instances": []},
            'The "instances" list of the application/json body is empty; send one or more '
            "instances.",
        ),
    ],
)
def test_envelope_refusals_say_what_is_accepted(
    stacks: dict[str, StackProcess], body: Any, message: str
) -> None:
    answer = stacks["default"].invoke(json.dumps(body))
    assert answer.status == 400, answer.body
    assert answer.json() == {"message": message}


def test_model_error_is_500_with_the_message(stacks: dict[str, StackProcess]) -> None:
    answer = stacks["default"].invoke(b"[[1, 2, 3]]")
    assert answer.status == 500
    message = answer.json()["message"]
    assert message.startswith("ValueError: X has 3 features")
    assert "Traceback" not in message


@pytest.fixture(scope="module")
def failures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, StackProcess]]:
    """Stacks that must fail to load: launched together, each expected to exit."""
    base = tmp_path_factory.mktemp("sklearn-failing")
    two = _model_dir(base, "two")
    (two / "a.pkl").write_bytes(pickle.dumps({"a": 1}))
    (two / "b.joblib").write_bytes(pickle.dumps({"b": 2}))
    broken = _model_dir(base, "broken")
    (broken / "model.joblib").write_bytes(b"this is not a pickle")
    stacks = {
        "empty": StackProcess(MODULE, _model_dir(base, "empty")),
        "two": StackProcess(MODULE, two),
        "broken": StackProcess(MODULE, broken),
        "conflict": StackProcess(MODULE, _model_dir(base, "conflict", CONFLICT)),
        "model_fn": StackProcess(MODULE, _model_dir(base, "model_fn", MODEL_FN_FAILS)),
        "program": StackProcess(
            MODULE, _model_dir(base, "program"), env={"SAGEMAKER_PROGRAM": "serve.py"}
        ),
    }
    for stack in stacks.values():
        stack.launch()
    yield stacks
    stop_all(stacks.values())  # any that unexpectedly kept running


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty", "Exactly one model file is required for scikit-learn models"),
        ("two", "(found ['a.pkl', 'b.joblib'])"),
        ("broken", "ModelLoadError: Failed to load"),
        ("conflict", TRANSFORM_CONFLICT),
        ("model_fn", "FileNotFoundError: estimator.bin is missing from the archive"),
        ("program", "SAGEMAKER_PROGRAM 'serve.py' was not found"),
    ],
)
def test_load_failures_exit_non_zero_with_the_reason(
    failures: dict[str, StackProcess], name: str, reason: str
) -> None:
    stack = failures[name]
    assert stack.wait_exit(120) == 1
    assert reason in stack.output()


@pytest.mark.parametrize(
    ("body", "content_type", "where"),
    [
        ("oops", "text/csv", "row 1, column 1 is 'oops'"),
        (
            "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16," * 3
            + "1,2,x,4,5,6,7,8,9,10,11,12,13,14,15,16",
            "text/csv",
            "row 1, column 51 is 'x'",
        ),
        ('[["a"]]', "application/json", "row 1, column 1 is 'a'"),
    ],
)
def test_text_for_a_numeric_model_is_the_callers_error(
    stacks: dict[str, StackProcess], body: str, content_type: str, where: str
) -> None:
    """`polyhost invoke iris 'oops' --content-type text/csv` answers 400 saying where."""
    answer = stacks["default"].invoke(body, content_type)
    assert answer.status == 400, answer.body
    message = answer.json()["message"]
    assert message.startswith("The request body cannot be read as numbers: " + where), message
    assert "(the model said: " in message
