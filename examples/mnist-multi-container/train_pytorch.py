"""Train the walkthrough's PyTorch CNN and save its state_dict as `model.pth`.

The network comes from `pytorch_code/inference.py`, the script the model is served with, so the
two cannot drift apart. A subset and few epochs keep training well under a minute on two CPU
cores; the accuracy on the held-out test split is printed and written to `metrics.json`.

    python train_pytorch.py --out work/pytorch [--data DIR] [--train-images 12000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import data

HERE = Path(__file__).resolve().parent
INFERENCE_SCRIPT = HERE / "pytorch_code" / "inference.py"


def inference_module() -> ModuleType:
    """The served inference script, imported under its own name (it is not a package)."""
    spec = importlib.util.spec_from_file_location("mnist_pytorch_inference", INFERENCE_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train(
    data_dir: Path,
    out_dir: Path,
    *,
    train_images: int | None = 12000,
    test_images: int | None = None,
    epochs: int = 2,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 1,
    threads: int = 1,
) -> dict[str, Any]:
    """Train, evaluate on the test split, write model.pth and metrics.json; returns the metrics."""
    import torch
    from torch.nn import functional as F

    torch.manual_seed(seed)
    # One thread by default: on a small, busy machine PyTorch's OpenMP workers spin against
    # each other and two threads train several times slower than one.
    torch.set_num_threads(threads)
    net_module = inference_module()
    train_split = data.load_split(data_dir, "train").head(train_images)
    test_split = data.load_split(data_dir, "t10k").head(test_images)
    x = torch.from_numpy(data.normalize(train_split.images)).unsqueeze(1)
    y = torch.from_numpy(train_split.labels.astype("int64"))

    model = net_module.Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    started = time.monotonic()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            optimizer.zero_grad()
            loss = F.nll_loss(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
    train_seconds = time.monotonic() - started

    model.eval()
    with torch.no_grad():
        test_x = torch.from_numpy(data.normalize(test_split.images)).unsqueeze(1)
        predicted = model(test_x).argmax(dim=1).numpy()
    accuracy = float((predicted == test_split.labels).mean())

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out_dir / "model.pth")
    metrics = {
        "framework": "pytorch",
        "accuracy": accuracy,
        "test_images": len(test_split.labels),
        "train_images": len(y),
        "epochs": epochs,
        "train_seconds": round(train_seconds, 2),
        "data": str(data_dir),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the walkthrough's PyTorch CNN.")
    parser.add_argument("--data", type=Path, default=None, help="folder of MNIST-format IDX files")
    parser.add_argument("--out", type=Path, required=True, help="where model.pth goes")
    parser.add_argument("--train-images", type=int, default=12000, help="0 = all")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads PyTorch may use")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        data_dir = data.ensure_dataset(args.data)
    except data.DataError as error:
        print(f"train_pytorch: {error}", file=sys.stderr)
        return 1
    metrics = train(
        data_dir,
        args.out,
        train_images=args.train_images or None,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        threads=args.threads,
    )
    print(
        f"pytorch: {metrics['train_images']} images x {metrics['epochs']} epochs in "
        f"{metrics['train_seconds']:.1f} s, test accuracy {metrics['accuracy']:.2%} "
        f"on {metrics['test_images']} images"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
