"""Tiny TensorFlow SavedModels for the multi-model tests: `y = scale * x + shift`, built in a
few hundred milliseconds, so each model answers a value that only it gives."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads

# A handler that posts to its model's own internal REST API, as handlers written for
# SageMaker's TensorFlow container do, and says where it posted.
REST_HANDLER = """
import json
import requests

def handler(data, context):
    response = requests.post(context.rest_uri, data=data.read())
    if response.status_code != 200:
        raise ValueError(response.content.decode("utf-8"))
    answer = {"via": context.rest_uri, "predictions": response.json()["predictions"]}
    return json.dumps(answer), "application/json"
"""


def build_linear(folder: Path, scale: float, shift: float, script: str | None = None) -> Path:
    """A SavedModel at `folder/1` (version 1 of model "model"), `code/inference.py` if given."""
    import tensorflow as tf

    class Linear(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.scale = tf.Variable(scale)
            self.shift = tf.Variable(shift)

        @tf.function(  # type: ignore[untyped-decorator]
            input_signature=[tf.TensorSpec([None], tf.float32, name="x")]
        )
        def serve(self, x: Any) -> Any:
            return {"y": x * self.scale + self.shift}

    module = Linear()
    folder.mkdir(parents=True, exist_ok=True)
    tf.saved_model.save(module, str(folder / "1"), signatures={"serving_default": module.serve})
    if script is not None:
        (folder / "code").mkdir()
        (folder / "code" / "inference.py").write_text(script, encoding="utf-8")
    return folder


def expected(scale: float, shift: float, rows: list[float]) -> list[float]:
    return [scale * x + shift for x in rows]


def archive(folder: Path) -> bytes:
    """`folder`'s contents as a model.tar.gz (paths relative to it, as SageMaker packs them)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buffer.getvalue()
