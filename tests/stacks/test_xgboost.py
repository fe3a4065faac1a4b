"""`polyhost/xgboost` as a program: SageMaker's XGBoost container contract with tiny models."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator

import numpy as np
import pytest
import xgboost as xgb

from polyhost.stacks.xgboost import payloads
from polyhost.stacks.xgboost.recordio import RecordIOError, read_rows
from tests.stacks.conftest import StackProcess, start_all, stop_all

MODULE = "polyhost.stacks.xgboost"

# Written by the SageMaker Python SDK (serializer_utils.write_numpy_to_dense_tensor and the
# sparse writer's calls): [[1.5, 2, 3], [4, 5, 6.25]] as float32; [[1.5, 2, 3]] as float64 with
# a label; sparse rows {1: 2.5, 3: 1.0} and {0: 3.0} of width 4; an Int32Tensor [1, -2, 3].
DENSE32 = bytes.fromhex(
    "0a23d7ce1c0000000a1a0a0676616c7565731210120e0a0c0000c03f00000040000040400a23d7ce1c0000000a"
    "1a0a0676616c7565731210120e0a0c000080400000a0400000c840"
)
DENSE64 = bytes.fromhex(
    "0a23d7ce400000000a260a0676616c756573121c1a1a0a18000000000000f83f0000000000000040000000000000"
    "084012160a0676616c756573120c1a0a0a08000000000000f03f"
)
SPARSE = bytes.fromhex(
    "0a23d7ce1f0000000a1d0a0676616c756573121312110a08000020400000803f120201031a0104000a23d7ce1a00"
    "00000a180a0676616c756573120e120c0a04000040401201001a01040000"
)
INT32 = bytes.fromhex("0a23d7ce1c0000000a1a0a0676616c75657312103a0e0a0c01feffffffffffffffff0103")

HANDLERS = """
import json
import os
import xgboost as xgb

def model_fn(model_dir):
    booster = xgb.Booster()
    booster.load_model(os.path.join(model_dir, "custom.json"))
    return booster

def input_fn(body, content_type):
    rows = json.loads(body)["rows"]
    return xgb.DMatrix(rows)

def predict_fn(data, model):
    return model.predict(data)

def output_fn(prediction, accept):
    return json.dumps({"labels": [int(p > 0.5) for p in prediction]}), "application/json"
"""


def _data(rows: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(rows, 4)).astype(np.float32)
    labels = (features[:, 0] + features[:, 1] > 0).astype(np.float32)
    return features, labels


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    features, labels = _data()
    return xgb.train(
        {"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
        xgb.DMatrix(features, label=labels),
        num_boost_round=5,
    )


@pytest.fixture(scope="module")
def stacks(
    tmp_path_factory: pytest.TempPathFactory, booster: xgb.Booster
) -> Iterator[dict[str, StackProcess]]:
    base = tmp_path_factory.mktemp("xgboost")
    saved = base / "saved"
    saved.mkdir()
    booster.save_model(str(saved / "xgboost-model.json"))
    (saved / "xgboost-model.json").rename(saved / "xgboost-model")  # JSON, by its content
    pickled = base / "pickled"
    pickled.mkdir()
    features, labels = _data()
    classifier = xgb.XGBClassifier(n_estimators=4, max_depth=2, n_jobs=1).fit(features, labels)
    (pickled / "xgboost-model").write_bytes(pickle.dumps(classifier))
    softprob = base / "softprob"
    softprob.mkdir()
    three = (features[:, 0] > 0).astype(int) + (features[:, 1] > 0).astype(int)
    multi = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "nthread": 1},
        xgb.DMatrix(features, label=three),
        num_boost_round=3,
    )
    multi.save_model(str(softprob / "model.ubj"))  # the only file: no xgboost-model needed
    custom = base / "custom"
    (custom / "code").mkdir(parents=True)
    booster.save_model(str(custom / "custom.json"))
    (custom / "code" / "inference.py").write_text(HANDLERS)
    broken = base / "broken"
    broken.mkdir()
    (broken / "xgboost-model").write_bytes(b"not a model at all")
    processes = {
        "saved": StackProcess(
            MODULE,
            saved,
            args=(
                "--sagemaker-image",
                "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
            ),
        ),
        "pickled": StackProcess(MODULE, pickled),
        "softprob": StackProcess(MODULE, softprob),
        "custom": StackProcess(MODULE, custom),
    }
    start_all(processes)
    failing = StackProcess(MODULE, broken).launch()
    processes["broken"] = failing
    yield processes
    stop_all(processes.values())


def _expected(booster: xgb.Booster, rows: np.ndarray) -> np.ndarray:
    return booster.predict(xgb.DMatrix(rows))


def _csv(values: np.ndarray) -> str:
    return "\n".join(",".join(str(v) for v in row) for row in values)


def test_csv_in_csv_out_is_the_boosters_prediction(
    stacks: dict[str, StackProcess], booster: xgb.Booster
) -> None:
    rows = _data(5)[0]
    answer = stacks["saved"].invoke(_csv(rows), "text/csv")
    assert answer.status == 200, answer.body
    assert answer.content_type == "text/csv"  # a missing Accept means CSV here
    scores = [float(v) for v in answer.body.decode().split(",")]
    assert np.allclose(scores, _expected(booster, rows), atol=1e-6)


def test_json_answer_and_every_input_type(
    stacks: dict[str, StackProcess], booster: xgb.Booster
) -> None:
    dense = np.array([[1.5, 2, 3, 0], [4, 5, 6.25, 0]], dtype=np.float32)
    expected = _expected(booster, dense)
    bodies = {
        "text/csv": "1.5,2,3,0\n4,5,6.25,0\n",
        "application/json": json.dumps({"instances": [{"features": r} for r in dense.tolist()]}),
        "text/libsvm": "0 0:1.5 1:2 2:3\n0 0:4 1:5 2:6.25\n",
    }
    for content_type, body in bodies.items():
        answer = stacks["saved"].invoke(body, content_type, accept="application/json")
        assert answer.status == 200, (content_type, answer.body)
        scores = [item["score"] for item in answer.json()["predictions"]]
        assert np.allclose(scores, expected, atol=1e-6), content_type
    for body in (json.dumps(dense.tolist()), json.dumps({"inputs": dense.tolist()})):
        answer = stacks["saved"].invoke(body, "application/json", accept="text/csv")
        assert np.allclose([float(v) for v in answer.body.split(b",")], expected, atol=1e-6)


def test_recordio_protobuf_dense_and_sparse(
    stacks: dict[str, StackProcess], booster: xgb.Booster
) -> None:
    # DENSE32 has 3 columns: the model's 4th is missing, so the width check answers 400.
    answer = stacks["saved"].invoke(DENSE32, "application/x-recordio-protobuf")
    assert answer.status == 400
    assert "have 3 columns; the model takes 4 features" in answer.json()["message"]
    answer = stacks["saved"].invoke(SPARSE, "application/x-recordio-protobuf")
    assert answer.status == 200, answer.body
    sparse = np.array([[np.nan, 2.5, np.nan, 1.0], [3.0, np.nan, np.nan, np.nan]])
    scores = [float(v) for v in answer.body.split(b",")]
    assert np.allclose(scores, _expected(booster, sparse), atol=1e-6)


def test_recordio_reader_reads_what_the_sdk_writes() -> None:
    dense = read_rows(DENSE32)
    assert [row.values.tolist() for row in dense] == [[1.5, 2, 3], [4, 5, 6.25]]
    assert [row.values.tolist() for row in read_rows(DENSE64)] == [[1.5, 2, 3]]
    sparse = read_rows(SPARSE)
    assert [(row.values.tolist(), row.keys, row.width) for row in sparse] == [
        ([2.5, 1.0], [1, 3], 4),
        ([3.0], [0], 4),
    ]
    assert read_rows(INT32)[0].values.tolist() == [1, -2, 3]
    assert payloads.decode_recordio(DENSE32).shape == (2, 3)
    with pytest.raises(RecordIOError, match=r"record 2 .* magic number"):
        read_rows(DENSE32[:36] + b"\x00" * 8)
    with pytest.raises(RecordIOError, match="record 1: the body ends inside the record"):
        read_rows(DENSE32[:20])


def test_pickled_sklearn_wrapper_and_softprob_rows(stacks: dict[str, StackProcess]) -> None:
    rows = _data(3)[0]
    answer = stacks["pickled"].invoke(_csv(rows), "text/csv", accept="application/json")
    assert answer.status == 200, answer.body
    assert len(answer.json()["predictions"]) == 3
    answer = stacks["softprob"].invoke(_csv(rows), "text/csv")
    lines = answer.body.decode().splitlines()
    assert len(lines) == 3 and all(len(line.split(",")) == 3 for line in lines)
    assert np.allclose([sum(map(float, line.split(","))) for line in lines], 1, atol=1e-5)
    answer = stacks["softprob"].invoke(_csv(rows[:1]), "text/csv", accept="application/json")
    assert len(answer.json()["predictions"][0]["score"]) == 3


def test_user_handlers_replace_the_defaults(stacks: dict[str, StackProcess]) -> None:
    rows = _data(4)[0].tolist()
    answer = stacks["custom"].invoke(json.dumps({"rows": rows}), "application/json")
    assert answer.status == 200, answer.body
    assert set(answer.json()["labels"]) <= {0, 1} and len(answer.json()["labels"]) == 4


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        ("1,2,oops,4", "text/csv", 400, "row 1, column 3 is 'oops', not a number"),
        ("1,2,3,4\n5,6,7", "text/csv", 400, "not rectangular: row 2 has 3 fields"),
        ("1,2", "text/csv", 400, "have 2 columns; the model takes 4 features"),
        ("0 1:2 x", "text/libsvm", 400, "row 1 (line 1), entry 2 is 'x', not index:value"),
        ('[[1, "a", 3, 4]]', "application/json", 400, "row 1, column 2 is 'a', not a number"),
        ('{"rows": []}', "application/json", 400, 'without one of "instances" or "inputs"'),
        ("{", "application/json", 400, "not valid JSON"),
        (b"\x00\x01", "application/x-recordio-protobuf", 400, "the body ends inside its header"),
        ("1,2,3,4", "application/x-npy", 415, "not supported by the XGBoost container"),
    ],
)
def test_bodies_the_stack_cannot_read_are_the_callers_error(
    stacks: dict[str, StackProcess], body: str | bytes, content_type: str, status: int, message: str
) -> None:
    answer = stacks["saved"].invoke(body, content_type)
    assert answer.status == status, answer.body
    assert message in answer.json()["message"]


def test_an_unsupported_accept_is_406(stacks: dict[str, StackProcess]) -> None:
    answer = stacks["saved"].invoke("1,2,3,4", "text/csv", accept="application/x-npy")
    assert answer.status == 406
    assert "Supported: text/csv, application/json" in answer.json()["message"]


def test_the_log_says_which_xgboost_serves_the_image(stacks: dict[str, StackProcess]) -> None:
    line = f"names XGBoost 1.7; XGBoost {xgb.__version__} serves it"
    assert line in stacks["saved"].output()
    assert "names XGBoost" not in stacks["pickled"].output()


def test_a_model_that_cannot_load_fails_with_the_reason(stacks: dict[str, StackProcess]) -> None:
    assert stacks["broken"].wait_exit() == 1
    output = stacks["broken"].output()
    assert "model failed to load: ModelLoadError: Failed to load" in output
    assert "neither a model saved with Booster.save_model" in output
