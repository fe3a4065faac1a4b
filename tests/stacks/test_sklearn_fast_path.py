"""The scikit-learn stack's fast path answers exactly what its handler chain answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import joblib
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from polyhost.stacks.sklearn.handlers import DEFAULTS
from polyhost.stacks.toolkit.handlers import HandlerService
from polyhost.stacks.toolkit.server import InvocationError, InvocationRequest

X, Y = load_digits(return_X_y=True)
ROW = [float(v) for v in X[0]]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> HandlerService:
    folder = tmp_path_factory.mktemp("sklearn-fast")
    joblib.dump(LogisticRegression(max_iter=300).fit(X[:300], Y[:300]), folder / "model.joblib")
    svc = HandlerService(DEFAULTS, environ={"SM_MODEL_DIR": str(folder)})
    svc.load()
    assert svc.fast_path is not None
    return svc


def _answer(svc: HandlerService, request: InvocationRequest, fast: bool) -> Any:
    kept = svc.fast_path
    svc.fast_path = kept if fast else None
    try:
        response = svc.invoke(request)
        return (response.status, response.content_type, response.body, response.custom_attributes)
    except InvocationError as error:
        return ("error", error.status, error.message)
    except Exception as error:
        return ("raised", type(error).__name__, str(error))
    finally:
        svc.fast_path = kept


BODIES: list[Any] = [
    [ROW],
    [ROW, ROW],
    {"instances": [ROW]},
    {"inputs": [ROW, ROW]},
    {"instances": [ROW] * 40},  # big enough for the dense reader
    [ROW] * 40,
    [[1, 2]],  # the model's own error (wrong number of features)
    {"instances": []},
    {"instances": [ROW], "signature_name": "x"},
    {"other": [ROW]},
    {"instances": "x"},
    [["a", "b"]],
    [[ROW[0], [1]]],
    5,
    [True] * 64,
]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize(
    ("content_type", "accept"),
    [("application/json", None), (None, "*/*"), ("application/json", "application/json")],
)
def test_fast_path_answers_as_the_chain(
    service: HandlerService, body: Any, content_type: str | None, accept: str | None
) -> None:
    data = json.dumps(body).encode()
    headers = {"content-type": content_type} if content_type else {}
    request = InvocationRequest(data, content_type, accept, None, headers)
    assert _answer(service, request, fast=True) == _answer(service, request, fast=False)


@pytest.mark.parametrize(
    "body",
    [b"", b"[1,", b"\xff\xfe[\x00]\x00", b"[NaN]", b"[1.0e400]", b'[["\xc3\xa9"]]'],
)
def test_bodies_the_fast_path_leaves_keep_the_chains_errors(
    service: HandlerService, body: bytes
) -> None:
    request = InvocationRequest(body, "application/json", None, None, {})
    assert _answer(service, request, fast=True) == _answer(service, request, fast=False)


def test_other_types_methods_and_attributes_take_the_chain(service: HandlerService) -> None:
    data = json.dumps([ROW]).encode()
    for request in (
        InvocationRequest(data, "application/json", "text/csv", None, {}),
        InvocationRequest(b"1,2\n", "text/csv", None, None, {}),
        InvocationRequest(
            data,
            "application/json",
            None,
            "sklearn-method=predict_proba",
            {"x-amzn-sagemaker-custom-attributes": "sklearn-method=predict_proba"},
        ),
    ):
        assert service.fast_path is not None
        assert (
            service.fast_path(service.model, request, request.accept or "application/json") is None
        )
        assert _answer(service, request, fast=True) == _answer(service, request, fast=False)


def test_a_user_handler_turns_the_fast_path_off(tmp_path: Path) -> None:
    joblib.dump(LogisticRegression(max_iter=300).fit(X[:300], Y[:300]), tmp_path / "model.joblib")
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text(
        "def output_fn(prediction, accept):\n    return 'seen', accept\n"
    )
    svc = HandlerService(DEFAULTS, environ={"SM_MODEL_DIR": str(tmp_path)})
    svc.load()
    assert svc.fast_path is None
    answer = svc.invoke(InvocationRequest(json.dumps([ROW]).encode(), None, None, None, {}))
    assert answer.body == b"seen"
