"""A built-in stack streaming a handler's generator: each item is a chunk of the answer as it is
made, run as a real program (the minimal stack of the handler tests, with a user script)."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator

import pytest

from tests.stacks.conftest import StackProcess

STACK = """
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

SCRIPT = """
import json
import time


def input_fn(body, content_type):
    return json.loads(body)


def predict_fn(data, model):
    mode = data["mode"]
    if mode == "whole":
        return {"whole": True}
    if mode == "fail-at-once":
        raise ValueError("no tokens today")

    def tokens():
        for index, word in enumerate(data["words"]):
            if mode == "fail-later" and index == 1:
                raise RuntimeError("the model fell over")
            time.sleep(data.get("delay", 0))
            yield {"token": word}

    return tokens()
"""

OUTPUT_SCRIPT = """
import json


def input_fn(body, content_type):
    return json.loads(body)


def output_fn(prediction, accept):
    def lines():
        for word in prediction["words"]:
            yield word + "\\n"
    return lines(), "text/plain"
"""


@pytest.fixture(scope="module")
def stacks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, StackProcess]]:
    base = tmp_path_factory.mktemp("streaming-stack")
    (base / "stack.py").write_text(STACK)
    started = {}
    for name, script in (("predict", SCRIPT), ("output", OUTPUT_SCRIPT)):
        model = base / name
        (model / "code").mkdir(parents=True)
        (model / "code" / "inference.py").write_text(script)
        started[name] = StackProcess(str(base / "stack.py"), model).launch()
    try:
        for stack in started.values():
            stack.wait_healthy(60)
        yield started
    finally:
        for stack in started.values():
            stack.stop()


def post(stack: StackProcess, payload: dict[str, object]) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    body = json.dumps(payload).encode()
    connection.request(
        "POST",
        "/invocations",
        body,
        {"Content-Type": "application/json", "Accept": "application/json"},
    )
    return connection.getresponse()


def chunks(response: http.client.HTTPResponse) -> Iterator[tuple[bytes, float]]:
    began = time.monotonic()
    while piece := response.read1(65536):
        yield piece, time.monotonic() - began


def test_a_predict_fn_generator_is_streamed_item_by_item(stacks: dict[str, StackProcess]) -> None:
    response = post(stacks["predict"], {"mode": "stream", "words": ["a", "b", "c"], "delay": 0.25})
    assert response.status == 200
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("Content-Type") == "application/json"
    seen = list(chunks(response))
    # Each item encoded on its own by the stack's output_fn, sent as it was made.
    assert [piece for piece, _ in seen] == [b'{"token": "a"}', b'{"token": "b"}', b'{"token": "c"}']
    assert seen[-1][1] - seen[0][1] > 0.35


def test_an_output_fn_generator_is_streamed_with_its_type(stacks: dict[str, StackProcess]) -> None:
    response = post(stacks["output"], {"words": ["x", "y"]})
    assert response.getheader("Content-Type") == "text/plain"
    assert b"".join(piece for piece, _ in chunks(response)) == b"x\ny\n"


def test_a_whole_answer_is_still_whole(stacks: dict[str, StackProcess]) -> None:
    response = post(stacks["predict"], {"mode": "whole"})
    assert response.getheader("Content-Length") is not None
    assert json.loads(response.read()) == {"whole": True}


def test_a_generator_failing_before_its_first_item_is_an_error_answer(
    stacks: dict[str, StackProcess],
) -> None:
    response = post(stacks["predict"], {"mode": "fail-at-once"})
    assert response.status == 500
    assert "no tokens today" in json.loads(response.read())["message"]


def test_a_generator_failing_later_drops_the_answer_unfinished(
    stacks: dict[str, StackProcess],
) -> None:
    response = post(stacks["predict"], {"mode": "fail-later", "words": ["a", "b", "c"]})
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    # The stack keeps serving.
    assert post(stacks["predict"], {"mode": "whole"}).status == 200
