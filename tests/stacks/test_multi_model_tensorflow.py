"""`polyhost/tensorflow` as a multi-model container (SAGEMAKER_MULTI_MODEL=true), run as a
program: SavedModels loaded side by side each answer their own, a model whose
`code/inference.py` posts to TensorFlow Serving's REST API reaches its own model there, and
unloading a model stops its REST API (a port and a thread an unloaded model must not keep)."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stacks.conftest import StackProcess, start_all, stop_all
from tests.stacks.tf_models import REST_HANDLER, build_linear, expected

pytest.importorskip("tensorflow")

ROWS = [1.0, 2.0, -4.0]
# name: (scale, shift, script); values exact in binary, so answers compare exactly.
MODELS: dict[str, tuple[float, float, str | None]] = {
    "linear/a": (2.0, 0.5, None),
    "linear/b": (-3.0, 8.0, None),
    "handled": (0.25, -1.0, REST_HANDLER),
}
LOAD_TIMEOUT = 180.0  # the first load imports TensorFlow


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("tf-mme")
    return {
        name: build_linear(base / name.replace("/", "-"), scale, shift, script)
        for name, (scale, shift, script) in MODELS.items()
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackProcess]:
    empty = tmp_path_factory.mktemp("no-model")
    process = StackProcess(
        "polyhost.stacks.tensorflow", empty, env={"SAGEMAKER_MULTI_MODEL": "true"}
    )
    start_all({"tf": process})
    yield process
    stop_all([process])


def _load(stack: StackProcess, name: str, folder: Path) -> tuple[int, dict[str, object]]:
    body = json.dumps({"model_name": name, "url": str(folder)})
    answer = stack.request("POST", "/models", body, "application/json", timeout=LOAD_TIMEOUT)
    return answer.status, answer.json()


def _invoke(stack: StackProcess, name: str) -> tuple[int, dict[str, object]]:
    path = f"/models/{name.replace('/', '%2F')}/invoke"
    answer = stack.request("POST", path, json.dumps({"instances": ROWS}), "application/json")
    return answer.status, answer.json()


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_savedmodels_side_by_side(stack: StackProcess, folders: dict[str, Path]) -> None:
    for name in ("linear/a", "linear/b"):
        status, answer = _load(stack, name, folders[name])
        assert status == 200, answer
    for name in ("linear/a", "linear/b"):
        scale, shift, _ = MODELS[name]
        assert _invoke(stack, name) == (200, {"predictions": expected(scale, shift, ROWS)})
    listed = stack.request("GET", "/models").json()["models"]
    assert {m["modelName"] for m in listed} >= {"linear/a", "linear/b"}
    # TensorFlow's thread pools are set once: a second load must not try (and log a refusal).
    assert "thread pools left as they are" not in stack.output()
    # A bad request is TensorFlow Serving's error, for that model only.
    bad = stack.request("POST", "/models/linear%2Fa/invoke", "{}", "application/json")
    assert bad.status == 400 and "error" in bad.json()
    assert _invoke(stack, "linear/b")[0] == 200


def test_a_handler_reaches_its_own_model_and_unloading_stops_its_api(
    stack: StackProcess, folders: dict[str, Path]
) -> None:
    scale, shift, _ = MODELS["handled"]
    status, answer = _load(stack, "handled", folders["handled"])
    assert status == 200, answer
    status, answer = _invoke(stack, "handled")
    assert status == 200, answer
    assert answer["predictions"] == expected(scale, shift, ROWS)
    found = re.match(r"http://127\.0\.0\.1:(\d+)/v1/models/model:predict$", str(answer["via"]))
    assert found is not None, answer
    port = int(found[1])
    assert not _refused(port)
    assert stack.request("DELETE", "/models/handled").status == 200
    assert _refused(port)
    # Loaded again, it gets a REST API of its own once more.
    assert _load(stack, "handled", folders["handled"])[0] == 200
    status, again = _invoke(stack, "handled")
    assert status == 200 and again["predictions"] == expected(scale, shift, ROWS)


def test_a_folder_without_a_savedmodel_fails_alone(
    stack: StackProcess, tmp_path: Path, folders: dict[str, Path]
) -> None:
    (tmp_path / "empty").mkdir()
    status, answer = _load(stack, "empty", tmp_path / "empty")
    assert status == 500 and "no SavedModel found" in str(answer["message"])
    assert stack.request("GET", "/models/empty").status == 404
    _load(stack, "linear/a", folders["linear/a"])  # loaded already, or loaded now
    assert _invoke(stack, "linear/a")[0] == 200
