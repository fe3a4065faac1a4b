"""The inference-toolkit handler contract, served by a minimal stack run as a real program.

The program's defaults decode the request, pass it through unchanged and encode it as asked,
so the codecs can be checked end to end; user scripts then override the handlers.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from polyhost.stacks.toolkit import codecs
from polyhost.stacks.toolkit.handlers import TRANSFORM_CONFLICT
from tests.stacks.conftest import StackProcess, start_all, stop_all

ECHO_STACK = """
from polyhost.stacks.toolkit.handlers import (
    DefaultHandlers, HandlerService, default_input_fn, default_output_fn,
)
from polyhost.stacks.toolkit.server import serve


def model_fn(model_dir):
    return "echo"


def predict_fn(data, model):
    return data


serve(HandlerService(DefaultHandlers(model_fn, default_input_fn, predict_fn, default_output_fn)))
"""

CONTEXT_SCRIPT = """
import json

LOADED = {"steps": []}


def pre_model_fn(model_dir):
    LOADED["steps"].append("pre_model_fn")


def model_fn(model_dir, context):
    LOADED["steps"].append("model_fn")
    LOADED["model_dir"] = model_dir
    LOADED["context_model_dir"] = context.system_properties["model_dir"]
    return "model"


def model_warmup_fn(model_dir, model):
    LOADED["steps"].append("model_warmup_fn:" + model)


def input_fn(body, content_type, context):
    return {
        "body_type": type(body).__name__,
        "content_type": content_type,
        "attributes": context.get_request_header(0, "X-Amzn-SageMaker-Custom-Attributes"),
        "all_headers_has_accept": "Accept" in context.get_all_request_header(0),
        "properties_content_type": (
            context.request_processor[0].get_request_properties().get("Content-Type")
        ),
    }


def predict_fn(data, model, context):
    data["model"] = model
    data["loaded"] = LOADED
    return data


def output_fn(prediction, accept, context):
    if prediction["attributes"] == "raw":
        return [1, 2, 3]  # not serialised: encoded as the Accept type
    if prediction["attributes"] == "plain":
        return "plain words"  # the answer's Content-Type comes from the Accept header
    prediction["accept"] = accept
    context.set_response_content_type(0, "application/vnd.polyhost+json")
    context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", "handled=yes")
    return json.dumps(prediction)
"""

TRANSFORM_SCRIPT = """
class Rejected(Exception):
    # The shape of SageMaker's BaseInferenceToolkitError: a status and a message.
    def __init__(self, status_code, message):
        super().__init__(message)
        self.status_code = status_code
        self.message = message


def transform_fn(model, body, content_type, accept):
    if body == b"reject":
        raise Rejected(422, "cannot process this")
    if body == b"crash":
        raise KeyError("missing-key")
    return body[::-1], "text/plain"
"""

CONFLICT_SCRIPT = """
def transform_fn(model, body, content_type, accept):
    return body

def input_fn(body, content_type):
    return body
"""


def _stack(base: Path, name: str, script: str | None = None, **env: str) -> StackProcess:
    model = base / name
    (model / "code").mkdir(parents=True)
    if script is not None:
        (model / "code" / "inference.py").write_text(script)
    return StackProcess(str(base / "echo_stack.py"), model, env=env)


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, StackProcess]]:
    base = tmp_path_factory.mktemp("handlers")
    (base / "echo_stack.py").write_text(ECHO_STACK)
    running = {
        "echo": _stack(base, "echo"),
        "csv_default": _stack(base, "csv_default", SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT="text/csv"),
        "context": _stack(base, "context", CONTEXT_SCRIPT),
        "transform": _stack(base, "transform", TRANSFORM_SCRIPT),
    }
    start_all(running)
    yield running
    stop_all(running.values())


ARRAY = np.array([[1.5, -2.0], [3.25, 4.0]], dtype=np.float32)


@pytest.mark.parametrize("content_type", codecs.SUPPORTED)
@pytest.mark.parametrize("accept", codecs.SUPPORTED)
def test_every_content_type_both_ways(
    stacks: dict[str, StackProcess], content_type: str, accept: str
) -> None:
    answer = stacks["echo"].invoke(codecs.encode(ARRAY, content_type), content_type, accept)
    assert answer.status == 200, answer.body
    assert answer.content_type == accept
    np.testing.assert_allclose(codecs.decode(answer.body, accept), ARRAY)


def test_accept_missing_any_or_a_list(stacks: dict[str, StackProcess]) -> None:
    echo = stacks["echo"]
    assert echo.invoke(b"[1, 2]").content_type == codecs.JSON
    assert echo.invoke(b"[1, 2]", accept="*/*").content_type == codecs.JSON
    listed = echo.invoke(b"[1, 2]", accept="image/png, text/csv;q=0.5")
    assert listed.content_type == codecs.CSV and listed.body == b"1\n2\n"
    csv_default = stacks["csv_default"]
    assert csv_default.invoke(b"[1, 2]").content_type == codecs.CSV
    assert csv_default.invoke(b"[1, 2]", accept="*/*").body == b"1\n2\n"


def test_missing_content_type_means_json(stacks: dict[str, StackProcess]) -> None:
    answer = stacks["echo"].invoke(b"[[1, 2]]", content_type=None)
    assert answer.status == 200 and answer.json() == [[1, 2]]


def test_refusals(stacks: dict[str, StackProcess]) -> None:
    echo = stacks["echo"]
    unsupported = echo.invoke(b"hello", "text/plain")
    assert unsupported.status == 415
    assert "Content type text/plain is not supported" in unsupported.json()["message"]
    undecodable = echo.invoke(b"[1, 2", codecs.JSON)
    assert undecodable.status == 400
    assert "not valid JSON" in undecodable.json()["message"]
    not_utf8 = echo.invoke(b"\xff\xfe", codecs.CSV)
    assert not_utf8.status == 400
    unacceptable = echo.invoke(b"[1]", codecs.JSON, accept="image/png")
    assert unacceptable.status == 406
    assert "Accept type image/png is not supported" in unacceptable.json()["message"]


def test_handlers_with_context(stacks: dict[str, StackProcess]) -> None:
    stack = stacks["context"]
    answer = stack.invoke(
        b'{"x": 1}',
        "application/json; charset=utf-8",
        accept="application/json",
        headers={"X-Amzn-SageMaker-Custom-Attributes": "trace=1"},
    )
    assert answer.status == 200, answer.body
    assert answer.content_type == "application/vnd.polyhost+json"
    assert answer.headers["x-amzn-sagemaker-custom-attributes"] == "handled=yes"
    seen = answer.json()
    assert seen["body_type"] == "str"  # JSON and CSV bodies arrive decoded from UTF-8
    assert seen["content_type"] == "application/json; charset=utf-8"
    assert seen["attributes"] == "trace=1"
    assert seen["all_headers_has_accept"] is True
    assert seen["properties_content_type"] == "application/json; charset=utf-8"
    assert seen["loaded"]["steps"] == ["pre_model_fn", "model_fn", "model_warmup_fn:model"]
    assert seen["accept"] == "application/json"
    assert seen["model"] == "model"
    assert seen["loaded"]["model_dir"] == str(stack.model_dir)
    assert seen["loaded"]["context_model_dir"] == str(stack.model_dir)
    binary = stack.invoke(b"\x00\x01", "application/x-npy").json()
    assert binary["body_type"] == "bytes"


def test_unserialised_output_is_encoded_as_accept(stacks: dict[str, StackProcess]) -> None:
    raw = {"X-Amzn-SageMaker-Custom-Attributes": "raw"}
    stack = stacks["context"]
    as_json = stack.invoke(b"{}", headers=raw)
    assert as_json.content_type == codecs.JSON and as_json.json() == [1, 2, 3]
    as_npy = stack.invoke(b"{}", accept=codecs.NPY, headers=raw)
    assert as_npy.content_type == codecs.NPY
    assert np.load(io.BytesIO(as_npy.body)).tolist() == [1, 2, 3]


def test_answer_content_type_follows_accept(stacks: dict[str, StackProcess]) -> None:
    plain = {"X-Amzn-SageMaker-Custom-Attributes": "plain"}
    stack = stacks["context"]
    assert stack.invoke(b"{}", accept="text/plain", headers=plain).content_type == "text/plain"
    listed = stack.invoke(b"{}", accept="*/*;q=0.1, text/x-words;q=0.9, text/plain", headers=plain)
    assert listed.content_type == "text/x-words" and listed.body == b"plain words"


def test_transform_fn_tuple_status_and_errors(stacks: dict[str, StackProcess]) -> None:
    stack = stacks["transform"]
    answer = stack.invoke(b"abc", "application/octet-stream")
    assert (answer.status, answer.body, answer.content_type) == (200, b"cba", "text/plain")
    rejected = stack.invoke(b"reject", "application/octet-stream")
    assert rejected.status == 422 and rejected.json() == {"message": "cannot process this"}
    crashed = stack.invoke(b"crash", "application/octet-stream")
    assert crashed.status == 500
    assert crashed.json() == {"message": "KeyError: 'missing-key'"}


def test_transform_fn_with_input_fn_fails_at_load(tmp_path: Path) -> None:
    (tmp_path / "echo_stack.py").write_text(ECHO_STACK)
    stack = _stack(tmp_path, "conflict", CONFLICT_SCRIPT).launch()
    assert stack.wait_exit(60) != 0
    assert TRANSFORM_CONFLICT in stack.output()


def test_missing_model_dir_fails_at_load(tmp_path: Path) -> None:
    (tmp_path / "echo_stack.py").write_text(ECHO_STACK)
    stack = StackProcess(str(tmp_path / "echo_stack.py"), tmp_path / "absent").launch()
    assert stack.wait_exit(60) != 0
    assert "model directory" in stack.output() and "does not exist" in stack.output()


def test_without_model_data_a_submitted_script_serves(tmp_path: Path) -> None:
    """No SM_MODEL_DIR (no ModelDataUrl): an empty model dir, the script from elsewhere."""
    (tmp_path / "echo_stack.py").write_text(ECHO_STACK)
    source = tmp_path / "source"
    source.mkdir()
    (source / "inference.py").write_text(
        "def model_fn(model_dir):\n    return model_dir\n\n"
        "def predict_fn(data, model):\n    return {'rows': len(data), 'model_dir': model}\n"
    )
    stack = StackProcess(
        str(tmp_path / "echo_stack.py"),
        tmp_path / "unused",
        env={"SM_MODEL_DIR": "", "SAGEMAKER_SUBMIT_DIRECTORY": str(source)},
    )
    try:
        stack.launch().wait_healthy(60)
        answer = stack.invoke(b"[[1], [2]]").json()
        assert answer["rows"] == 2 and "polyhost-empty-model-" in answer["model_dir"]
    finally:
        stack.stop()
