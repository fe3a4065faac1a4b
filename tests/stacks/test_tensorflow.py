"""`polyhost/tensorflow` as a program: tiny real SavedModels in SageMaker's layouts, every
content type, TensorFlow Serving's formats and methods, inference.py handlers, the error cases.

The models are built here with TensorFlow in a few hundred milliseconds: a TF1-style
`half_plus_*` model with predict, classify and regress signatures (TensorFlow Serving's own
test model), a tf.Module with several named inputs/outputs and a bytes signature, and a Keras
model exported with `model.export()` (what the MNIST walkthrough packages).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.stacks.conftest import StackProcess, start_all, stop_all
from tests.support.server import free_port
from tests.support.waiting import eventually

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads
tf = pytest.importorskip("tensorflow")

MODULE = "polyhost.stacks.tensorflow"
ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"

HANDLER = """
import json
import requests

def handler(data, context):
    body = data.read().decode("utf-8")
    if body == "boom":
        raise ValueError("the handler refused: boom")
    rows = [[float(v) for v in line.split()] for line in body.splitlines() if line.strip()]
    response = requests.post(context.rest_uri, data=json.dumps({"instances": rows}))
    if response.status_code != 200:
        raise ValueError(response.content.decode("utf-8"))
    status = requests.get(context.rest_uri.rsplit(":", 1)[0]).json()
    answer = {
        "predictions": response.json()["predictions"],
        "status": status,
        "context": {key: getattr(context, key) for key in context._fields if key != "channel"},
    }
    return json.dumps(answer), "application/vnd.polyhost.test+json"
"""

PAIR = """
import json

def input_handler(data, context):
    if context.request_content_type == "text/csv":
        return json.dumps({"instances": [float(x) for x in data.read().decode("utf-8").split(",")]})
    if context.request_content_type == "application/json":
        d = data.read().decode("utf-8")
        return d if len(d) else ""
    raise ValueError('{{"error": "unsupported content type {}"}}'.format(
        context.request_content_type or "unknown"))

def output_handler(data, context):
    if data.status_code != 200:
        raise ValueError(data.content.decode("utf-8"))
    return data.content, context.accept_header
"""

NO_HANDLERS = """
def input_handler(data, context):
    return data.read()
"""


# --- models ---------------------------------------------------------------------------------------


def build_half(path: Path, add: float) -> None:
    """TensorFlow Serving's half_plus_N: y = 0.5 * x + N, with classify/regress signatures."""
    graph = tf.Graph()
    with graph.as_default():
        v1 = tf.compat.v1
        serialized = v1.placeholder(tf.string, [None], name="tf_example")
        features = tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})
        x = v1.placeholder(tf.float32, [None], name="x")
        a, b = tf.Variable(0.5), tf.Variable(float(add))
        y = tf.add(a * x, b, name="y")
        y_examples = tf.add(a * features["x"], b, name="y_examples")
        scores = tf.concat([tf.sigmoid(y_examples), 1 - tf.sigmoid(y_examples)], axis=1)
        classes = tf.tile(tf.constant([["pos", "neg"]]), [tf.shape(y_examples)[0], 1])
        with v1.Session() as session:
            session.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(path))
            signatures = {
                "serving_default": v1.saved_model.predict_signature_def({"x": x}, {"y": y}),
                "regress_x": v1.saved_model.regression_signature_def(serialized, y_examples),
                "classify_x": v1.saved_model.classification_signature_def(
                    serialized, classes, scores
                ),
            }
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
            builder.save()


def build_multi(path: Path) -> None:
    """A tf.Module: two named inputs and outputs, a single-output signature, a bytes one."""

    class Multi(tf.Module):  # type: ignore[misc]
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 2], tf.float32, name="a"),
                tf.TensorSpec([None], tf.int32, name="b"),
            ]
        )
        def multi(self, a: Any, b: Any) -> Any:
            return {"sum": tf.reduce_sum(a, 1) + tf.cast(b, tf.float32), "scaled": a * 2.0}

        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def single(self, x: Any) -> Any:
            return {"y": tf.reduce_sum(x, 1)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="raw")])
        def echo(self, raw: Any) -> Any:
            return {"out_bytes": raw, "text": raw, "length": tf.strings.length(raw)}

    module = Multi()
    tf.saved_model.save(
        module,
        str(path),
        signatures={"serving_default": module.multi, "single": module.single, "echo": module.echo},
    )


def build_scale(path: Path, factor: float) -> None:
    """y = factor * sum(x) over rows of 3."""

    class Scale(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
        def serve(self, x: Any) -> Any:
            return {"y": tf.reduce_sum(x, 1) * factor}

    module = Scale()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def build_keras(path: Path) -> None:
    """Keras 3 export: input (None, 3) -> output (None, 2), both columns the row's sum."""
    import keras

    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(2, use_bias=False, kernel_initializer="ones")]
    )
    model.export(str(path), verbose=False)


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, StackProcess]]:
    base = tmp_path_factory.mktemp("tensorflow")
    # Several models by name, numbered versions (one zero-padded): <dir>/<name>/<version>/.
    named = base / "named"
    build_half(named / "half" / "1", add=2)
    build_half(named / "half" / "00000002", add=3)
    build_multi(named / "multi" / "1")
    build_keras(named / "keras" / "1")
    # Versions at the root (SageMaker names that model "model") and a handler(data, context).
    handler = base / "handler"
    build_scale(handler / "1", 1.0)
    build_scale(handler / "2", 2.0)
    (handler / "code").mkdir()
    (handler / "code" / "inference.py").write_text(HANDLER)
    # <dir>/model/00000001/ as the MNIST guide packs it, with input_handler + output_handler.
    pair = base / "pair"
    build_half(pair / "model" / "00000001", add=2)
    (pair / "code").mkdir()
    (pair / "code" / "inference.py").write_text(PAIR)
    rest_port = free_port()  # the handler stack's REST API: the range's second port
    processes = {
        "named": StackProcess(MODULE, named, {"SAGEMAKER_TFS_DEFAULT_MODEL_NAME": "multi"}),
        "handler": StackProcess(
            MODULE, handler, {"SAGEMAKER_SAFE_PORT_RANGE": f"{rest_port - 1}-{rest_port}"}
        ),
        "pair": StackProcess(MODULE, pair),
    }
    start_all(processes)
    yield processes
    stop_all(processes.values())


@pytest.fixture(scope="module")
def named(stacks: dict[str, StackProcess]) -> StackProcess:
    return stacks["named"]


def rest_port(stack: StackProcess) -> int:
    low, high = stack.env["SAGEMAKER_SAFE_PORT_RANGE"].split("-")
    assert int(high) == int(low) + 1
    return int(high)


def attributes(**values: str) -> dict[str, str]:
    return {ATTRIBUTES: ",".join(f"tfs-{key.replace('_', '-')}={v}" for key, v in values.items())}


def post(stack: StackProcess, document: Any, **tfs: str) -> Any:
    answer = stack.invoke(json.dumps(document), headers=attributes(**tfs))
    assert answer.status == 200, answer.body
    assert answer.content_type == "application/json"
    return answer.json()


def error(stack: StackProcess, body: str | bytes, status: int, **kwargs: Any) -> str:
    answer = stack.invoke(body, **kwargs)
    assert answer.status == status, answer.body
    document = answer.json()
    assert set(document) == {"error"}, document
    return str(document["error"])


# --- TensorFlow Serving's predict formats ---------------------------------------------------------


def test_row_format_with_named_inputs_answers_a_list_of_objects(named: StackProcess) -> None:
    document = {"instances": [{"a": [1, 2], "b": 3}, {"a": [0.5, 0.25], "b": 1}]}
    assert post(named, document) == {
        "predictions": [{"scaled": [2.0, 4.0], "sum": 6.0}, {"scaled": [1.0, 0.5], "sum": 1.75}]
    }


def test_columnar_format_answers_outputs_by_name(named: StackProcess) -> None:
    document = {"inputs": {"a": [[1, 2], [0.5, 0.25]], "b": [3, 1]}}
    assert post(named, document) == {
        "outputs": {"scaled": [[2.0, 4.0], [1.0, 0.5]], "sum": [6.0, 1.75]}
    }


def test_signature_name_and_single_output_give_plain_values(named: StackProcess) -> None:
    rows = [[1, 2, 3], [4, 5, 6]]
    assert post(named, {"signature_name": "single", "instances": rows}) == {
        "predictions": [6.0, 15.0]
    }
    assert post(named, {"signature_name": "single", "inputs": rows}) == {"outputs": [6.0, 15.0]}
    assert post(named, {"signature_name": "single", "inputs": {"x": rows}}) == {
        "outputs": [6.0, 15.0]
    }


def test_binary_strings_travel_as_b64(named: StackProcess) -> None:
    document = {"signature_name": "echo", "instances": ["héllo", {"b64": "AAEC"}]}
    assert post(named, document) == {
        "predictions": [
            {"length": 6, "out_bytes": {"b64": "aMOpbGxv"}, "text": "héllo"},
            {"length": 3, "out_bytes": {"b64": "AAEC"}, "text": "\x00\x01\x02"},
        ]
    }


def test_float32_is_written_shortest_and_nan_passes(named: StackProcess) -> None:
    answer = named.invoke('{"instances": [0.2]}', headers=attributes(model_name="half"))
    assert answer.body == b'{"predictions": [3.1]}'  # not 3.0999999046325684
    document = {"signature_name": "single", "instances": [[1, "NaN", 2]]}
    answer = named.invoke(json.dumps(document).replace('"NaN"', "NaN"))
    assert answer.status == 200, answer.body
    assert math.isnan(answer.json()["predictions"][0])


def test_keras_export_is_served(named: StackProcess) -> None:
    rows = [[1, 2, 3], [0.5, 0.5, 0.5]]
    assert post(named, {"instances": rows}, model_name="keras") == {
        "predictions": [[6.0, 6.0], [1.5, 1.5]]
    }


# --- SageMaker's content types --------------------------------------------------------------------


def test_bare_json_list_of_rows_is_instances_and_a_flat_list_is_one_row(
    named: StackProcess,
) -> None:
    keras = attributes(model_name="keras")
    answer = named.invoke("[[1, 2, 3], [4, 5, 6]]", headers=keras)
    assert answer.json() == {"predictions": [[6.0, 6.0], [15.0, 15.0]]}
    answer = named.invoke("[1, 2, 3]", headers=keras)
    assert answer.json() == {"predictions": [[6.0, 6.0]]}
    answer = named.invoke('[{"a": [1, 1], "b": 1}, {"a": [2, 2], "b": 2}]')
    assert [row["sum"] for row in answer.json()["predictions"]] == [3.0, 6.0]


def test_json_lines_rows_become_instances(named: StackProcess) -> None:
    body = "[1, 2, 3]\n\n[4, 5, 6]\n"
    answer = named.invoke(
        body,
        "application/jsonlines",
        accept="application/jsonlines",
        headers=attributes(model_name="keras"),
    )
    assert answer.status == 200, answer.body
    assert answer.content_type == "application/jsonlines"
    assert answer.json() == {"predictions": [[6.0, 6.0], [15.0, 15.0]]}
    # Several JSON documents sent as application/json are read as JSON lines too.
    answer = named.invoke('{"a": [1, 2], "b": 0}\n{"a": [3, 4], "b": 0}')
    assert [row["sum"] for row in answer.json()["predictions"]] == [3.0, 7.0]


def test_csv_rows_become_instances(named: StackProcess) -> None:
    answer = named.invoke("1,2,3\n4,5,6\n", "text/csv", headers=attributes(model_name="keras"))
    assert answer.status == 200, answer.body
    assert answer.json() == {"predictions": [[6.0, 6.0], [15.0, 15.0]]}
    answer = named.invoke(
        "1\n2\n", "text/csv; charset=utf-8", headers=attributes(model_name="half")
    )
    assert answer.json() == {"predictions": [3.5, 4.0]}


def test_missing_content_type_means_json(named: StackProcess) -> None:
    answer = named.invoke('{"instances": [1.0]}', None, headers=attributes(model_name="half"))
    assert answer.status == 200, answer.body
    assert answer.json() == {"predictions": [3.5]}


# --- models, versions, methods --------------------------------------------------------------------


def test_newest_version_wins_and_tfs_model_version_picks_another(named: StackProcess) -> None:
    assert post(named, {"instances": [1.0, 2.0]}, model_name="half") == {"predictions": [3.5, 4.0]}
    assert post(named, {"instances": [1.0, 2.0]}, model_name="half", model_version="1") == {
        "predictions": [2.5, 3.0]
    }
    assert post(named, {"instances": [1.0]}, model_name="half", model_version="2") == {
        "predictions": [3.5]
    }


def test_unknown_model_or_version_is_not_found(named: StackProcess) -> None:
    message = error(named, '{"instances": [1]}', 404, headers=attributes(model_name="nope"))
    assert message.startswith("Servable not found for request: Latest(nope)")
    message = error(
        named, '{"instances": [1]}', 404, headers=attributes(model_name="half", model_version="7")
    )
    assert message.startswith("Servable not found for request: Specific(half, 7)")
    message = error(
        named, '{"instances": [1]}', 400, headers=attributes(model_name="half", model_version="x")
    )
    assert "whole number" in message


def test_classify_and_regress(named: StackProcess) -> None:
    examples = [{"x": 1.0}, {"x": 2.0}]
    regress = {"signature_name": "regress_x", "examples": examples}
    assert post(named, regress, model_name="half", method="regress") == {"results": [3.5, 4.0]}
    classify = {"signature_name": "classify_x", "examples": [{"x": 1.0}, {"x": -20.0}]}
    results = post(named, classify, model_name="half", method="classify")["results"]
    assert [[label for label, _ in row] for row in results] == [["pos", "neg"], ["pos", "neg"]]
    assert results[0][0][1] == pytest.approx(1 / (1 + math.exp(-3.5)), rel=1e-5)
    assert results[1][0][1] < 0.01


def test_classify_needs_a_classification_signature(named: StackProcess) -> None:
    message = error(
        named,
        '{"examples": [{"x": 1.0}]}',
        400,
        headers=attributes(model_name="half", method="classify"),
    )
    assert "Expected classification signature method_name to be tensorflow/serving/classify" in (
        message
    )
    message = error(named, '{"examples": [{"x": 1.0}]}', 400, headers=attributes(method="regress"))
    assert "Expected regression signature method_name" in message
    message = error(named, '{"instances": [1]}', 400, headers=attributes(method="explain"))
    assert "tfs-method must be predict, classify or regress" in message


# --- errors ---------------------------------------------------------------------------------------


def test_bad_shape_is_400(named: StackProcess) -> None:
    message = error(named, '{"instances": [[1, 2]]}', 400, headers=attributes(model_name="keras"))
    assert "takes shape [-1,3]" in message and "gives [1,2]" in message
    message = error(
        named, '{"instances": [[1, 2, 3], [1, 2]]}', 400, headers=attributes(model_name="keras")
    )
    assert "Encountered list at unexpected size" in message


def test_unknown_signature_is_400(named: StackProcess) -> None:
    message = error(named, '{"signature_name": "nope", "instances": [[1, 2, 3]]}', 400)
    assert message.startswith('Serving signature name: "nope" not found in signature def')


def test_wrong_dtype_and_missing_inputs_are_400(named: StackProcess) -> None:
    message = error(named, '{"instances": ["a"]}', 400, headers=attributes(model_name="half"))
    assert 'JSON Value: "a" Type: String is not of expected type: float' in message
    message = error(named, '{"inputs": {"a": [[1, 2]], "b": [0.5]}}', 400)
    assert "is not of expected type: int32" in message
    message = error(named, '{"inputs": {"a": [[1, 2]]}}', 400)
    assert message == "Missing named input: b in 'inputs' object."
    message = error(named, '{"instances": [{"a": [1, 2]}]}', 400)
    assert "must only have keys: a,b" in message
    message = error(named, '{"instances": [1], "inputs": [1]}', 400)
    assert "only one of 'inputs' or 'instances'" in message
    message = error(named, '{"instances": []}', 400)
    assert "No values in 'instances' array" in message


def test_undecodable_bodies_are_400(named: StackProcess) -> None:
    assert error(named, '{"instances": [1', 400).startswith("JSON Parse error")
    assert error(named, "", 400) == "JSON Parse error: The document is empty"
    assert "not a number" in error(named, "1,2,x\n", 400, content_type="text/csv")


def test_other_content_types_are_415(named: StackProcess) -> None:
    message = error(named, b"\x89PNG", 415, content_type="image/png")
    assert message.startswith("Unsupported Media Type: image/png")


# --- inference.py handlers ------------------------------------------------------------------------


def test_handler_gets_sagemakers_context_and_a_working_rest_uri(
    stacks: dict[str, StackProcess],
) -> None:
    stack = stacks["handler"]
    answer = stack.invoke("1 2 3\n4 5 6\n", "text/plain", accept="application/json")
    assert answer.status == 200, answer.body
    assert answer.content_type == "application/vnd.polyhost.test+json"
    document = answer.json()
    assert document["predictions"] == [12.0, 30.0]  # version 2 (factor 2) is the newest
    assert [v["version"] for v in document["status"]["model_version_status"]] == ["2", "1"]
    context = document["context"]
    assert context["rest_uri"] == f"http://127.0.0.1:{rest_port(stack)}/v1/models/model:predict"
    assert context["model_name"] is None and context["method"] is None
    assert context["request_content_type"] == "text/plain"
    assert context["accept_header"] == "application/json"
    assert context["content_length"] == len("1 2 3\n4 5 6\n")
    assert context["grpc_port"] is None


def test_handler_sees_tfs_attributes(stacks: dict[str, StackProcess]) -> None:
    headers = attributes(model_name="model", model_version="1", method="predict")
    answer = stacks["handler"].invoke("1 2 3", "text/plain", headers=headers)
    assert answer.status == 200, answer.body
    document = answer.json()
    assert document["predictions"] == [6.0]  # version 1
    context = document["context"]
    assert context["rest_uri"].endswith("/v1/models/model/versions/1:predict")
    assert (context["model_name"], context["model_version"], context["method"]) == (
        "model",
        "1",
        "predict",
    )
    assert context["custom_attributes"] == headers[ATTRIBUTES]
    assert context["accept_header"] == "application/json"  # defaulted, as SageMaker does


def test_handler_errors_are_500_with_the_message(stacks: dict[str, StackProcess]) -> None:
    assert error(stacks["handler"], "boom", 500) == "the handler refused: boom"
    message = error(stacks["handler"], "1 2", 500)  # the model refuses a row of two
    assert "takes shape [-1,3]" in message


def test_input_and_output_handlers_around_the_rest_api(stacks: dict[str, StackProcess]) -> None:
    stack = stacks["pair"]
    answer = stack.invoke("1,2,5", "text/csv", accept="application/json")
    assert answer.status == 200, answer.body
    assert answer.json() == {"predictions": [2.5, 3.0, 4.5]}
    answer = stack.invoke('{"instances": [1.0]}', accept="application/vnd.custom")
    assert answer.status == 200, answer.body
    assert answer.content_type == "application/vnd.custom"
    assert answer.json() == {"predictions": [2.5]}
    message = error(stack, "x", 500, content_type="image/png")
    assert message == '{"error": "unsupported content type image/png"}'
    message = error(stack, '{"instances": ["a"]}', 500)
    assert "is not of expected type: float" in message


# --- start-up -------------------------------------------------------------------------------------


def test_the_first_healthy_ping_finds_every_model_loaded(stacks: dict[str, StackProcess]) -> None:
    """/ping answers 200 only once loading is over: a second stack over the named models, watched
    from its launch, serves each model and version from its very first healthy /ping on."""
    named = stacks["named"]
    stack = StackProcess(MODULE, named.model_dir, named.env).launch()
    try:
        assert stack.process is not None
        process = stack.process
        before: list[int | None] = []

        def healthy() -> bool:
            assert process.poll() is None, stack.output()
            status = stack.ping()
            before.append(status)
            return status == 200

        eventually(healthy, "the second stack to pass /ping", timeout=180)
        # At once, nothing in between: every servable is there.
        assert post(stack, {"instances": [1.0]}, model_name="half") == {"predictions": [3.5]}
        assert post(stack, {"instances": [1.0]}, model_name="half", model_version="1") == {
            "predictions": [2.5]
        }
        assert post(stack, {"instances": [[1, 2, 3]]}, model_name="keras") == {
            "predictions": [[6.0, 6.0]]
        }
        assert post(stack, {"instances": [{"a": [1, 2], "b": 3}]}) == {  # the default: multi
            "predictions": [{"scaled": [2.0, 4.0], "sum": 6.0}]
        }
        # Before that, /ping either found nothing listening yet or said "loading".
        assert set(before[:-1]) <= {None, 503}, before
    finally:
        stack.stop()


def test_bad_layouts_and_scripts_fail_the_start_with_a_reason(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "model.h5").write_bytes(b"not a SavedModel")
    script = tmp_path / "script"
    (script / "1").mkdir(parents=True)
    (script / "1" / "saved_model.pb").write_bytes(b"")
    (script / "code").mkdir()
    (script / "code" / "inference.py").write_text(NO_HANDLERS)
    failing = [StackProcess(MODULE, empty).launch(), StackProcess(MODULE, script).launch()]
    try:
        codes = [stack.wait_exit(60) for stack in failing]
        assert codes == [1, 1]
        assert "no SavedModel found" in failing[0].output()
        assert "Handlers are not implemented correctly in user script" in failing[1].output()
    finally:
        stop_all(failing)
