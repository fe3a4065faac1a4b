"""SageMaker's multi-model API in the built-in stacks (SAGEMAKER_MULTI_MODEL=true), run as
programs: load, list, describe, invoke, unload, the memory budget, and /ping during a load."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import joblib
import numpy as np
import pytest
import xgboost as xgb
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from tests.stacks.conftest import StackProcess, start_all, stop_all

CUSTOM = """
import json

def output_fn(prediction, accept):
    return json.dumps({"custom": prediction.tolist()}), "application/json"
"""

SLOW = """
import time

def model_fn(model_dir):
    time.sleep(1.5)
    return None

def transform_fn(model, body, content_type, accept):
    return b"slow", "text/plain"
"""

BROKEN = """
def model_fn(model_dir):
    raise RuntimeError("this model cannot load")
"""

PADDING = 24 * 1024 * 1024  # what a padded model adds, on disk and in memory


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return data.data.astype(np.float32), data.target


def _sklearn_model(folder: Path, x: np.ndarray, y: np.ndarray, *, seed: int, pad: bool) -> None:
    folder.mkdir(parents=True)
    estimator = LogisticRegression(max_iter=200, C=0.01 * (seed + 1)).fit(x[:400], y[:400])
    if pad:  # a model whose memory is known: its weights and this array
        estimator.padding_ = np.random.default_rng(seed).random(PADDING // 8)
    joblib.dump(estimator, folder / "model.joblib")


@pytest.fixture(scope="module")
def models(
    tmp_path_factory: pytest.TempPathFactory, digits: tuple[np.ndarray, np.ndarray]
) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("mme")
    x, y = digits
    found: dict[str, Path] = {}
    for index in range(3):
        found[f"plain-{index}"] = base / f"plain-{index}"
        _sklearn_model(found[f"plain-{index}"], x, y, seed=index, pad=False)
    for index in range(3):
        found[f"big-{index}"] = base / f"big-{index}"
        _sklearn_model(found[f"big-{index}"], x, y, seed=index, pad=True)
    found["custom"] = base / "custom"
    _sklearn_model(found["custom"], x, y, seed=7, pad=False)
    (found["custom"] / "code").mkdir()
    (found["custom"] / "code" / "inference.py").write_text(CUSTOM)
    for name, script in (("slow", SLOW), ("broken", BROKEN)):
        found[name] = base / name
        (found[name] / "code").mkdir(parents=True)
        (found[name] / "code" / "inference.py").write_text(script)
    return found


@pytest.fixture(scope="module")
def stacks(
    tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]
) -> Iterator[dict[str, StackProcess]]:
    empty = tmp_path_factory.mktemp("no-model")
    mme = {"SAGEMAKER_MULTI_MODEL": "true"}
    processes = {
        "sklearn": StackProcess("polyhost.stacks.sklearn", empty, env=mme),
        # Room for two padded models, not three.
        "budget": StackProcess(
            "polyhost.stacks.sklearn",
            empty,
            env={**mme, "POLYHOST_MULTI_MODEL_MEMORY_BYTES": str(int(PADDING * 2.6))},
        ),
        "xgboost": StackProcess("polyhost.stacks.xgboost", empty, env=mme),
    }
    start_all(processes)
    yield processes
    stop_all(processes.values())


def _load(stack: StackProcess, name: str, folder: Path) -> tuple[int, dict[str, object]]:
    body = json.dumps({"model_name": name, "url": str(folder)})
    answer = stack.request("POST", "/models", body, "application/json")
    return answer.status, answer.json()


def _rows(digits: tuple[np.ndarray, np.ndarray]) -> list[list[float]]:
    rows: list[list[float]] = digits[0][1000:1004].tolist()
    return rows


def test_models_load_answer_and_unload(
    stacks: dict[str, StackProcess],
    models: dict[str, Path],
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    stack = stacks["sklearn"]
    rows = _rows(digits)
    for index in range(3):
        name = f"team/plain-{index}"
        status, answer = _load(stack, name, models[f"plain-{index}"])
        assert status == 200, answer
        assert answer["modelName"] == name
    status, refused = _load(stack, "team/plain-0", models["plain-0"])
    assert status == 409 and "already loaded" in str(refused["message"])
    for index in range(3):
        expected = joblib.load(models[f"plain-{index}"] / "model.joblib").predict(rows).tolist()
        path = f"/models/team%2Fplain-{index}/invoke"
        reply = stack.request("POST", path, json.dumps(rows), "application/json")
        assert reply.status == 200 and reply.json() == expected
    page = stack.request("GET", "/models?limit=2").json()
    assert [m["modelName"] for m in page["models"]] == ["team/plain-0", "team/plain-1"]
    rest = stack.request("GET", f"/models?limit=2&next_page_token={page['nextPageToken']}")
    assert [m["modelName"] for m in rest.json()["models"]] == ["team/plain-2"]
    assert "nextPageToken" not in rest.json()
    described = stack.request("GET", "/models/team%2Fplain-1").json()
    assert described["modelUrl"] == str(models["plain-1"])
    assert stack.request("DELETE", "/models/team%2Fplain-1").status == 200
    assert stack.request("DELETE", "/models/team%2Fplain-1").status == 404
    gone = stack.request("POST", "/models/team%2Fplain-1/invoke", json.dumps(rows))
    assert gone.status == 404 and "not loaded" in gone.json()["message"]
    plain = stack.invoke(json.dumps(rows))
    assert plain.status == 400 and "/models/{name}/invoke" in plain.json()["message"]


def test_each_model_has_its_own_handlers(
    stacks: dict[str, StackProcess],
    models: dict[str, Path],
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    stack = stacks["sklearn"]
    rows = _rows(digits)
    assert _load(stack, "custom", models["custom"])[0] == 200
    answer = stack.request("POST", "/models/custom/invoke", json.dumps(rows), "application/json")
    expected = joblib.load(models["custom"] / "model.joblib").predict(rows).tolist()
    assert answer.json() == {"custom": expected}


def test_failed_and_missing_loads(stacks: dict[str, StackProcess], models: dict[str, Path]) -> None:
    stack = stacks["sklearn"]
    status, answer = _load(stack, "broken", models["broken"])
    assert status == 500 and "this model cannot load" in str(answer["message"])
    status, answer = _load(stack, "nowhere", models["broken"] / "nothing-here")
    assert status == 404
    bad = stack.request("POST", "/models", b'{"model_name": "a\\u0000b", "url": "/x"}')
    assert bad.status == 400
    huge = stack.request("POST", "/models", b"x" * 70_000)
    assert huge.status == 413
    assert stack.request("GET", "/models/broken").status == 404


def test_ping_answers_during_a_load(
    stacks: dict[str, StackProcess], models: dict[str, Path]
) -> None:
    stack = stacks["sklearn"]
    outcome: list[int] = []
    loader = threading.Thread(
        target=lambda: outcome.append(_load(stack, "slow", models["slow"])[0])
    )
    loader.start()
    time.sleep(0.3)
    started = time.monotonic()
    assert stack.ping() == 200
    assert time.monotonic() - started < 0.5
    assert loader.is_alive()  # the load is still going on
    loader.join(10)
    assert outcome == [200]


def test_memory_budget_answers_507(
    stacks: dict[str, StackProcess],
    models: dict[str, Path],
    digits: tuple[np.ndarray, np.ndarray],
) -> None:
    stack = stacks["budget"]
    assert _load(stack, "big-0", models["big-0"])[0] == 200
    assert _load(stack, "big-1", models["big-1"])[0] == 200
    status, answer = _load(stack, "big-2", models["big-2"])
    assert status == 507 and "budget" in str(answer["message"])
    counted = stack.request("GET", "/models/big-0").json()["memoryBytes"]
    assert PADDING * 0.9 < counted < PADDING * 1.5
    assert stack.request("DELETE", "/models/big-0").status == 200
    assert _load(stack, "big-2", models["big-2"])[0] == 200
    rows = _rows(digits)
    reply = stack.request("POST", "/models/big-2/invoke", json.dumps(rows), "application/json")
    expected = joblib.load(models["big-2"] / "model.joblib").predict(rows).tolist()
    assert reply.json() == expected


def test_xgboost_serves_many_models(stacks: dict[str, StackProcess], tmp_path: Path) -> None:
    stack = stacks["xgboost"]
    rng = np.random.default_rng(0)
    features = rng.normal(size=(100, 4)).astype(np.float32)
    expected: dict[str, list[float]] = {}
    for index in range(2):
        labels = (features[:, index] > 0).astype(np.float32)
        booster = xgb.train(
            {"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
            xgb.DMatrix(features, label=labels),
            num_boost_round=3,
        )
        folder = tmp_path / f"xgb-{index}"
        folder.mkdir()
        booster.save_model(str(folder / "xgboost-model.json"))
        expected[f"xgb-{index}"] = booster.predict(xgb.DMatrix(features[:3])).tolist()
        assert _load(stack, f"xgb-{index}", folder)[0] == 200
    body = "\n".join(",".join(str(v) for v in row) for row in features[:3].tolist())
    for name, values in expected.items():
        answer = stack.request("POST", f"/models/{name}/invoke", body, "text/csv")
        assert answer.status == 200, answer.body
        got = [float(v) for v in answer.body.decode().replace("\n", ",").split(",") if v]
        assert np.allclose(got, values, atol=1e-5)
