"""`polyhost/pytorch` as a program: TorchScript and state_dict models, codecs, overrides, failures.

All stacks of this module start together (torch's import dominates their start-up), once.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from polyhost.stacks.toolkit import codecs
from tests.stacks.conftest import StackProcess, start_all, stop_all

MODULE = "polyhost.stacks.pytorch"
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")

# The network of SageMaker's MNIST example, scaled down; the same source is the user script.
NET = """
import os
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=5)
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv(x)), 4)
        return F.log_softmax(self.fc(torch.flatten(x, 1)), dim=1)
"""

MODEL_FN = """

def model_fn(model_dir):
    model = Net()
    with open(os.path.join(model_dir, "model.pth"), "rb") as f:
        model.load_state_dict(torch.load(f))
    return model.to(torch.device("cpu")).eval()
"""

# As the multi-container guide's PyTorch script: {"inputs": N x 1 x 28 x 28} in, JSON out.
HANDLERS = """
import json


def input_fn(request_body, request_content_type):
    assert request_content_type == "application/json"
    data = json.loads(request_body)["inputs"]
    return torch.tensor(data, dtype=torch.float32)


def predict_fn(input_object, model, context):
    with torch.no_grad():
        prediction = model(input_object)
    model_dir = context.system_properties["model_dir"]
    return prediction, model_dir


def output_fn(predictions, content_type, context):
    prediction, model_dir = predictions
    return json.dumps({"classes": prediction.argmax(dim=1).tolist(), "model_dir": model_dir})
"""

TRANSFORM = """
import io
import numpy as np


def transform_fn(model, request_body, content_type, accept, context):
    batch = torch.from_numpy(np.load(io.BytesIO(request_body)))
    with torch.no_grad():
        scores = model(batch).numpy()
    buffer = io.BytesIO()
    np.save(buffer, scores.argmax(axis=1).astype(np.int32))
    attrs = context.get_request_header(0, "x-amzn-sagemaker-custom-attributes") or ""
    return buffer.getvalue(), "application/x-npy; attrs=" + attrs
"""


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.linear(x)) * 2.0


def _net_module() -> ModuleType:
    module = ModuleType("mnist_net")
    exec(compile(NET, "mnist_net", "exec"), module.__dict__)
    return module


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return Tiny().eval()


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    torch.manual_seed(1)
    return _net_module().Net().eval()  # type: ignore[no-any-return]


def _dir(base: Path, name: str, script: str | None = None) -> Path:
    folder = base / name
    folder.mkdir()
    if script is not None:
        (folder / "code").mkdir()
        (folder / "code" / "inference.py").write_text(script)
    return folder


@pytest.fixture(scope="module")
def stacks(
    tmp_path_factory: pytest.TempPathFactory, tiny: torch.nn.Module, net: torch.nn.Module
) -> Iterator[dict[str, StackProcess]]:
    base = tmp_path_factory.mktemp("pytorch")
    scripted = torch.jit.script(tiny)
    torchscript = _dir(base, "torchscript")
    scripted.save(str(torchscript / "model.pt"))
    named = _dir(base, "named")
    scripted.save(str(named / "weights.pth"))
    state_dict = _dir(base, "state_dict", NET + MODEL_FN)
    torch.save(net.state_dict(), state_dict / "model.pth")
    handlers = _dir(base, "handlers", NET + MODEL_FN + HANDLERS)
    torch.save(net.state_dict(), handlers / "model.pth")
    transform = _dir(base, "transform", NET + MODEL_FN + TRANSFORM)
    torch.save(net.state_dict(), transform / "model.pth")
    two = _dir(base, "two")
    scripted.save(str(two / "a.pt"))
    scripted.save(str(two / "b.pth"))
    no_code = _dir(base, "no_code")
    torch.save(net.state_dict(), no_code / "model.pth")
    healthy = {
        "torchscript": StackProcess(MODULE, torchscript),
        "named": StackProcess(MODULE, named),
        "state_dict": StackProcess(MODULE, state_dict),
        "handlers": StackProcess(MODULE, handlers),
        "transform": StackProcess(MODULE, transform),
    }
    failing = {
        "fail_empty": StackProcess(MODULE, _dir(base, "empty")),
        "fail_two": StackProcess(MODULE, two),
        "fail_no_code": StackProcess(MODULE, no_code),
    }
    for stack in failing.values():
        stack.launch()
    start_all(healthy)
    yield {**healthy, **failing}
    stop_all([*healthy.values(), *failing.values()])


INPUT = np.array([[0.5, -1.0, 2.0, 0.25], [1.0, 1.0, -3.0, 0.0]], dtype=np.float32)


def _expected(model: torch.nn.Module, array: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(array)).numpy()  # type: ignore[no-any-return]


def _body(content_type: str) -> bytes:
    if content_type == codecs.CSV:
        return "\n".join(",".join(str(v) for v in row) for row in INPUT.tolist()).encode()
    return codecs.encode(INPUT, content_type)


@pytest.mark.parametrize("content_type", codecs.SUPPORTED)
@pytest.mark.parametrize("accept", codecs.SUPPORTED)
def test_torchscript_every_content_type_both_ways(
    stacks: dict[str, StackProcess], tiny: torch.nn.Module, content_type: str, accept: str
) -> None:
    answer = stacks["torchscript"].invoke(_body(content_type), content_type, accept)
    assert answer.status == 200, answer.body
    assert answer.content_type == accept
    result = np.asarray(codecs.decode(answer.body, accept), dtype=np.float32)
    np.testing.assert_allclose(result, _expected(tiny, INPUT), rtol=1e-5, atol=1e-6)


def test_npy_answer_keeps_float32(stacks: dict[str, StackProcess]) -> None:
    answer = stacks["torchscript"].invoke(_body(codecs.JSON), codecs.JSON, codecs.NPY)
    assert np.load(io.BytesIO(answer.body)).dtype == np.float32


def test_single_pth_file_is_loaded(stacks: dict[str, StackProcess], tiny: torch.nn.Module) -> None:
    answer = stacks["named"].invoke(json.dumps(INPUT.tolist()))
    assert answer.status == 200, answer.body
    np.testing.assert_allclose(answer.json(), _expected(tiny, INPUT), rtol=1e-5, atol=1e-6)


def _images(count: int) -> np.ndarray:
    return np.random.default_rng(7).random((count, 1, 28, 28), dtype=np.float32)


def test_state_dict_with_user_model_fn(
    stacks: dict[str, StackProcess], net: torch.nn.Module
) -> None:
    images = _images(3)
    answer = stacks["state_dict"].invoke(json.dumps(images.tolist()))
    assert answer.status == 200, answer.body
    np.testing.assert_allclose(answer.json(), _expected(net, images), rtol=1e-4, atol=1e-5)


def test_input_predict_output_overrides_as_in_the_guide(
    stacks: dict[str, StackProcess], net: torch.nn.Module
) -> None:
    images = _images(4)
    stack = stacks["handlers"]
    answer = stack.invoke(json.dumps({"inputs": images.tolist()}))
    assert answer.status == 200, answer.body
    result = answer.json()
    assert result["classes"] == _expected(net, images).argmax(axis=1).tolist()
    assert result["model_dir"] == str(stack.model_dir)
    wrong = stack.invoke(_body(codecs.CSV), codecs.CSV)
    assert wrong.status == 500 and wrong.json()["message"].startswith("AssertionError")


def test_transform_fn_with_context(stacks: dict[str, StackProcess], net: torch.nn.Module) -> None:
    images = _images(2)
    answer = stacks["transform"].invoke(
        codecs.encode(images, codecs.NPY),
        codecs.NPY,
        headers={"X-Amzn-SageMaker-Custom-Attributes": "run=9"},
    )
    assert answer.status == 200, answer.body
    assert answer.content_type == "application/x-npy; attrs=run=9"
    labels = np.load(io.BytesIO(answer.body))
    assert labels.tolist() == _expected(net, images).argmax(axis=1).tolist()


def test_refusals(stacks: dict[str, StackProcess]) -> None:
    stack = stacks["torchscript"]
    assert stack.invoke(b"<xml/>", "application/xml").status == 415
    assert stack.invoke(b"[[1, 2,", codecs.JSON).status == 400
    strings = stack.invoke(b'[["a", "b"]]', codecs.JSON)
    assert strings.status == 400 and "needs numbers" in strings.json()["message"]
    assert stack.invoke(json.dumps(INPUT.tolist()), accept="image/png").status == 406


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_enveloped_rows_answer_predictions(
    stacks: dict[str, StackProcess], tiny: torch.nn.Module, key: str
) -> None:
    answer = stacks["torchscript"].invoke(json.dumps({key: INPUT.tolist()}))
    assert answer.status == 200, answer.body
    assert answer.content_type == codecs.JSON
    result = answer.json()
    assert list(result) == ["predictions"]
    np.testing.assert_allclose(result["predictions"], _expected(tiny, INPUT), rtol=1e-5, atol=1e-6)


def test_bare_array_answers_bare_predictions(
    stacks: dict[str, StackProcess], tiny: torch.nn.Module
) -> None:
    answer = stacks["torchscript"].invoke(json.dumps(INPUT.tolist()))
    assert answer.status == 200, answer.body
    assert isinstance(answer.json(), list)
    np.testing.assert_allclose(answer.json(), _expected(tiny, INPUT), rtol=1e-5, atol=1e-6)


def test_envelope_with_user_model_fn_and_npy_answer(
    stacks: dict[str, StackProcess], net: torch.nn.Module
) -> None:
    """The envelope is JSON's: an NPY answer to it is the bare float32 array."""
    images = _images(2)
    enveloped = json.dumps({"instances": images.tolist()})
    answer = stacks["state_dict"].invoke(enveloped)
    assert answer.status == 200, answer.body
    np.testing.assert_allclose(
        answer.json()["predictions"], _expected(net, images), rtol=1e-4, atol=1e-5
    )
    as_npy = stacks["state_dict"].invoke(enveloped, accept=codecs.NPY)
    array = np.load(io.BytesIO(as_npy.body))
    assert array.dtype == np.float32
    np.testing.assert_allclose(array, _expected(net, images), rtol=1e-4, atol=1e-5)


ACCEPTED = (
    'Send a JSON array of rows (e.g. [[1.0, 2.0]]), {"instances": rows} or {"inputs": rows}, '
    "or write an input_fn to accept other shapes."
)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"data": INPUT.tolist()},
            'The application/json body is a JSON object without "instances" or "inputs" '
            f'(it has "data"). {ACCEPTED}',
        ),
        (
            {"inputs": INPUT.tolist(), "instances": INPUT.tolist()},
            'The application/json body has both "instances" and "inputs"; send the rows under '
            f"one of them. {ACCEPTED}",
        ),
        (
            {"inputs": {"x": INPUT.tolist()}},
            'The "inputs" of the application/json body is a JSON object, not a list of '
            f'instances (e.g. {{"inputs": [[1.0, 2.0]]}}). {ACCEPTED}',
        ),
        (
            {"instances": None},
            'The "instances" of the application/json body is null, not a list of instances '
            f'(e.g. {{"instances": [[1.0, 2.0]]}}). {ACCEPTED}',
        ),
        (
            {"instances": INPUT.tolist(), "parameters": {}},
            f'The application/json body has keys besides "instances": "parameters". {ACCEPTED}',
        ),
        (
            {"instances": [["a", "b"]]},
            "The application/json body cannot be read as numbers: row 1, column 1 is 'a', not a "
            "number. (the default PyTorch input_fn needs numbers; write an input_fn for text)",
        ),
    ],
)
def test_envelope_refusals_say_what_is_accepted(
    stacks: dict[str, StackProcess], body: Any, message: str
) -> None:
    answer = stacks["torchscript"].invoke(json.dumps(body))
    assert answer.status == 400, answer.body
    assert answer.json() == {"message": message}


def test_shape_mismatch_is_500_with_the_message(stacks: dict[str, StackProcess]) -> None:
    answer = stacks["torchscript"].invoke(b"[[1.0, 2.0]]")
    assert answer.status == 500
    message: Any = answer.json()["message"]
    assert message.startswith("RuntimeError: The following operation failed")
    assert message.endswith("RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x2 and 4x3)")
    assert "Traceback" not in message


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("fail_empty", "Exactly one .pth or .pt file is required for PyTorch models: []"),
        (
            "fail_two",
            "Exactly one .pth or .pt file is required for PyTorch models: ['a.pt', 'b.pth']",
        ),
        ("fail_no_code", "model.pth. Please ensure model is saved using torchscript."),
    ],
)
def test_load_failures_exit_non_zero_with_sagemakers_message(
    stacks: dict[str, StackProcess], name: str, reason: str
) -> None:
    stack = stacks[name]
    assert stack.wait_exit(120) == 1
    assert reason in stack.output()
