"""The MNIST models of scenario 14 and its in-process reference, run in a child process.

`python -m bench.stack_inline COMMAND ...`:
  build-tf DIR           the walkthrough's Keras CNN (seeded, untrained: the same arithmetic
                         per request as a trained one) as a SavedModel in DIR/model/1
  build-pytorch FILE     the walkthrough's PyTorch CNN (`Net` of PyTorch's MNIST example),
                         seeded, as TorchScript
  bodies DIR             the 100-image requests: DIR/tensorflow.json `{"instances": N x 28 x
                         28 x 1}` and DIR/pytorch.json `{"inputs": N x 1 x 28 x 28}`, standardised
                         pixels rounded to 4 decimals in float32, as the walkthrough sends them
  inline-tf DIR BODY N   N times: decode + model call + encode in this one process; prints the
  inline-pytorch FILE BODY N  milliseconds of each as a JSON list

"Inline" is the least a program can do with the request: orjson.loads, np.asarray(float32),
the SavedModel's serving signature (or the TorchScript module under no_grad) and orjson.dumps
of the answer, with the thread counts the stack uses (TensorFlow: its defaults of min(4, cores)
intra-op and min(2, cores) inter-op threads; torch: half the cores, at least one).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

IMAGES = 100


def _pixels() -> Any:
    import numpy as np

    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, size=(IMAGES, 28, 28)).astype(np.float32)
    mean = images.mean(axis=(1, 2), keepdims=True)
    std = images.std(axis=(1, 2), keepdims=True) + np.finfo(np.float32).eps
    return np.round((images - mean) / std, 4)


def bodies(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    pixels = _pixels()
    tf_body = json.dumps({"instances": pixels[..., None].tolist()})
    (folder / "tensorflow.json").write_text(tf_body, encoding="utf-8")
    torch_body = json.dumps({"inputs": pixels[:, None].tolist()})
    (folder / "pytorch.json").write_text(torch_body, encoding="utf-8")


def build_tf(folder: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tensorflow import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1), name="images"),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.25),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.export(str(folder / "model" / "1"), verbose=False)


def build_pytorch(path: Path) -> None:
    import torch
    from torch import nn
    from torch.nn import functional

    class Net(nn.Module):  # type: ignore[misc]  # the walkthrough's network
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
            self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
            self.conv2_drop = nn.Dropout2d()
            self.fc1 = nn.Linear(320, 50)
            self.fc2 = nn.Linear(50, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = functional.relu(functional.max_pool2d(self.conv1(x), 2))
            x = functional.relu(functional.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
            x = x.view(-1, 320)
            x = functional.relu(self.fc1(x))
            x = functional.dropout(x, training=self.training)
            return functional.log_softmax(self.fc2(x), dim=1)

    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(Net().eval()).save(str(path))


def _timed(step: Any, count: int) -> list[float]:
    # As the stacks do after loading: the framework's objects out of the collector's way, or a
    # full collection set off by the parsed lists walks them all (hundreds of ms with TF).
    gc.collect()
    gc.freeze()
    step()  # warm-up: first calls trace and allocate
    times = []
    for _ in range(count):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000.0)
    return times


def inline_tf(folder: Path, body: bytes, count: int) -> list[float]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import orjson
    import tensorflow as tf

    cpus = os.cpu_count() or 1
    tf.config.threading.set_intra_op_parallelism_threads(min(4, cpus))
    tf.config.threading.set_inter_op_parallelism_threads(min(2, cpus))
    signature = tf.saved_model.load(str(folder / "model" / "1")).signatures["serving_default"]
    name = next(iter(signature.structured_input_signature[1]))

    def step() -> bytes:
        images = np.asarray(orjson.loads(body)["instances"], dtype=np.float32)
        outputs = signature(**{name: tf.constant(images)})
        scores = next(iter(outputs.values())).numpy()
        return orjson.dumps({"predictions": scores}, option=orjson.OPT_SERIALIZE_NUMPY)

    return _timed(step, count)


def inline_pytorch(path: Path, body: bytes, count: int) -> list[float]:
    import numpy as np
    import orjson
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    model = torch.jit.load(str(path), map_location="cpu").eval()

    def step() -> bytes:
        images = torch.from_numpy(np.asarray(orjson.loads(body)["inputs"], dtype=np.float32))
        with torch.no_grad():
            scores = model(images).numpy()
        return orjson.dumps({"predictions": scores}, option=orjson.OPT_SERIALIZE_NUMPY)

    return _timed(step, count)


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "build-tf":
        build_tf(Path(args[0]))
    elif command == "build-pytorch":
        build_pytorch(Path(args[0]))
    elif command == "bodies":
        bodies(Path(args[0]))
    elif command in ("inline-tf", "inline-pytorch"):
        run = inline_tf if command == "inline-tf" else inline_pytorch
        print(json.dumps(run(Path(args[0]), Path(args[1]).read_bytes(), int(args[2]))))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
