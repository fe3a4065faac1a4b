"""The models of the peer comparisons, built here so every system serves exactly the same one.

- digits: scikit-learn LogisticRegression fitted on `load_digits` (shipped with scikit-learn),
  saved with joblib as `model.joblib`; MLServer loads that file, polyhost/sklearn gets it in a
  `model.tar.gz` through a `file://` ModelDataUrl.
- mnist: the CNN of PyTorch's MNIST example (two convolutions, two linear layers) with seeded,
  untrained weights — the same arithmetic per request as a trained one, which is what a speed
  test needs — saved as TorchScript `model.pt` for TorchServe's .mar and polyhost/pytorch.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BuiltModel:
    folder: Path
    model_file: Path
    tarball: Path
    rows: list[list[float]]  # the request of every system, as plain numbers

    @property
    def url(self) -> str:
        return self.tarball.resolve().as_uri()


def _tar(folder: Path, model_file: Path) -> Path:
    tarball = folder / "model.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(model_file, arcname=model_file.name)
    return tarball


def digits(folder: Path, rows: int = 1) -> BuiltModel:
    """Logistic regression on the digits data; `rows` of it are the benchmark's request."""
    import joblib
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True, exist_ok=True)
    x, y = load_digits(return_X_y=True)
    model_file = folder / "model.joblib"
    if not model_file.exists():
        model = LogisticRegression(max_iter=2000).fit(x, y)
        joblib.dump(model, model_file)
    data = [[float(v) for v in row] for row in x[:rows]]
    (folder / "rows.json").write_text(json.dumps(data), encoding="utf-8")
    return BuiltModel(folder, model_file, _tar(folder, model_file), data)


def _mnist_net() -> Any:
    import torch
    from torch import nn
    from torch.nn import functional

    class Net(nn.Module):  # type: ignore[misc]  # PyTorch's examples/mnist/main.py
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, 1)
            self.conv2 = nn.Conv2d(32, 64, 3, 1)
            self.dropout1 = nn.Dropout(0.25)
            self.dropout2 = nn.Dropout(0.5)
            self.fc1 = nn.Linear(9216, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = functional.relu(self.conv1(x))
            x = functional.relu(self.conv2(x))
            x = functional.max_pool2d(x, 2)
            x = self.dropout1(x)
            x = torch.flatten(x, 1)
            x = functional.relu(self.fc1(x))
            x = self.dropout2(x)
            return functional.log_softmax(self.fc2(x), dim=1)

    torch.manual_seed(0)
    return Net().eval()


def mnist(folder: Path) -> BuiltModel:
    """TorchScript MNIST CNN; the request is one 1x1x28x28 image of seeded random pixels."""
    import random

    import torch

    folder.mkdir(parents=True, exist_ok=True)
    model_file = folder / "model.pt"
    if not model_file.exists():
        torch.jit.script(_mnist_net()).save(str(model_file))
    rng = random.Random(1)
    image = [[[round(rng.random(), 3) for _ in range(28)] for _ in range(28)]]
    (folder / "rows.json").write_text(json.dumps([image]), encoding="utf-8")
    return BuiltModel(folder, model_file, _tar(folder, model_file), [image])  # type: ignore[list-item]
