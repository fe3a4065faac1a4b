"""Train the walkthrough's Keras CNN and export it as a SavedModel for TensorFlow Serving.

The export goes to `<out>/model/1/` — a model named "model", version 1 — the layout SageMaker's
TensorFlow Serving container (and polyhost/tensorflow) reads from model.tar.gz. Its serving
signature takes N x 28 x 28 x 1 floats (per-image standardised) and returns N x 10 class
probabilities. The accuracy on the held-out test split goes to `metrics.json`.

    python train_tensorflow.py --out work/tensorflow [--data DIR] [--train-images 12000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import data

EXPORT_SUBDIR = Path("model") / "1"


def build_model(keras: Any) -> Any:
    """A small CNN: two conv/pool blocks and a dense head (about 60k parameters)."""
    return keras.Sequential(
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
    threads: int = 2,
) -> dict[str, Any]:
    """Train, evaluate, export `<out>/model/1/` and write `metrics.json`; returns the metrics."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from tensorflow import keras

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    keras.utils.set_random_seed(seed)
    train_split = data.load_split(data_dir, "train").head(train_images)
    test_split = data.load_split(data_dir, "t10k").head(test_images)
    x = data.normalize(train_split.images)[..., None]
    test_x = data.normalize(test_split.images)[..., None]

    model = build_model(keras)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    started = time.monotonic()
    model.fit(x, train_split.labels, epochs=epochs, batch_size=batch_size, verbose=0)
    train_seconds = time.monotonic() - started
    probabilities = model.predict(test_x, batch_size=1000, verbose=0)
    accuracy = float((probabilities.argmax(axis=1) == test_split.labels).mean())

    export_dir = out_dir / EXPORT_SUBDIR
    if export_dir.exists():
        shutil.rmtree(export_dir)
    export_dir.parent.mkdir(parents=True, exist_ok=True)
    model.export(str(export_dir), verbose=False)  # a SavedModel with a serving_default signature
    metrics = {
        "framework": "tensorflow",
        "accuracy": accuracy,
        "test_images": len(test_split.labels),
        "train_images": len(train_split.labels),
        "epochs": epochs,
        "train_seconds": round(train_seconds, 2),
        "data": str(data_dir),
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the walkthrough's Keras CNN.")
    parser.add_argument("--data", type=Path, default=None, help="folder of MNIST-format IDX files")
    parser.add_argument("--out", type=Path, required=True, help="where model/1/ goes")
    parser.add_argument("--train-images", type=int, default=12000, help="0 = all")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads TensorFlow may use")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        data_dir = data.ensure_dataset(args.data)
    except data.DataError as error:
        print(f"train_tensorflow: {error}", file=sys.stderr)
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
        f"tensorflow: {metrics['train_images']} images x {metrics['epochs']} epochs in "
        f"{metrics['train_seconds']:.1f} s, test accuracy {metrics['accuracy']:.2%} "
        f"on {metrics['test_images']} images"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
