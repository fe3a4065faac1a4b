"""MNIST-format data for the walkthrough: find it, install it if we may, read the IDX files.

Any folder with the four classic IDX files works (`--data DIR`), gzipped or not, named as on
the MNIST site (`train-images-idx3-ubyte.gz`, `t10k-labels.idx1-ubyte`, ...). Without `--data`
the walkthrough uses Fashion-MNIST from Debian's `dataset-fashion-mnist` package: same format,
same shapes, ten classes, and a harder task than digits, so the accuracies mean something.

Run `python data.py` to check (and, as root, install) the data before anything else.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES = tuple(str(digit) for digit in range(10))
# IDX header: two zero bytes, a type code, the number of dimensions; then one uint32 per dim.
_IDX_UBYTE = 0x08


class DataError(Exception):
    """The data is missing or malformed; the message says what to run or pass instead."""


@dataclass(frozen=True)
class Split:
    """Images as uint8 (N, 28, 28) and labels as uint8 (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def head(self, count: int | None) -> Split:
        """The first `count` examples (all when None): the files are already shuffled."""
        if count is None or count >= len(self.labels):
            return self
        return Split(self.images[:count], self.labels[:count])


def _find(data_dir: Path, split: str, kind: str) -> Path:
    """`train-images-idx3-ubyte[.gz]` or the `train-images.idx3-ubyte` spelling."""
    dims = 3 if kind == "images" else 1
    for separator in ("-", "."):
        for suffix in (".gz", ""):
            path = data_dir / f"{split}-{kind}{separator}idx{dims}-ubyte{suffix}"
            if path.is_file():
                return path
    raise DataError(
        f"{data_dir} has no {split}-{kind}-idx{dims}-ubyte[.gz]; --data needs a folder with the "
        "four MNIST-format IDX files (train/t10k images and labels)"
    )


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (gzipped or not) as a uint8 array of the shape its header gives."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != _IDX_UBYTE:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) if shape else 0
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: header says {shape}, but the file holds {len(raw) - header} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_split(data_dir: Path, split: str) -> Split:
    """`split` is "train" or "t10k" (the held-out test set)."""
    images = read_idx(_find(data_dir, split, "images"))
    labels = read_idx(_find(data_dir, split, "labels"))
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise DataError(
            f"{data_dir}: {split} images {images.shape} and labels {labels.shape} are not "
            "N x 28 x 28 with N labels"
        )
    return Split(images, labels)


def normalize(images: np.ndarray) -> np.ndarray:
    """Per-image standardisation, as the SageMaker walkthrough's `normalize(x, axis=(1, 2))`."""
    x = images.astype(np.float32)
    mean = x.mean(axis=(1, 2), keepdims=True)
    std = x.std(axis=(1, 2), keepdims=True) + np.finfo(np.float32).eps
    return (x - mean) / std


def class_names(data_dir: Path) -> tuple[str, ...]:
    """Fashion-MNIST's names when the folder is Fashion-MNIST, else the digits."""
    return FASHION_CLASSES if "fashion" in str(data_dir).lower() else DIGIT_CLASSES


def check_dataset(data_dir: Path) -> None:
    """DataError naming the first of the four IDX files that `data_dir` lacks."""
    for split in ("train", "t10k"):
        for kind in ("images", "labels"):
            _find(data_dir, split, kind)


def has_dataset(data_dir: Path) -> bool:
    try:
        check_dataset(data_dir)
    except DataError:
        return False
    return True


def _apt_install() -> None:
    """`apt-get install -y dataset-fashion-mnist`, after `apt-get update` if the first try fails.

    Only called as root; the package list may be stale on a fresh machine, hence the retry.
    """
    command = ["apt-get", "install", "-y", "--no-install-recommends", DEBIAN_PACKAGE]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"installing the data set: {' '.join(command)}", flush=True)
    if subprocess.run(command, env=env, check=False).returncode == 0:
        return
    subprocess.run(["apt-get", "update"], env=env, check=False)
    if subprocess.run(command, env=env, check=False).returncode != 0:
        raise DataError(f"`{' '.join(command)}` failed; see its output above")


def ensure_dataset(data_dir: Path | None = None) -> Path:
    """The folder to read; installs Debian's Fashion-MNIST when it is the default and missing."""
    if data_dir is not None:
        check_dataset(data_dir)
        return data_dir
    if has_dataset(DEFAULT_DATA_DIR):
        return DEFAULT_DATA_DIR
    if os.geteuid() == 0 and shutil.which("apt-get"):
        _apt_install()
        if has_dataset(DEFAULT_DATA_DIR):
            return DEFAULT_DATA_DIR
        raise DataError(f"{DEBIAN_PACKAGE} is installed but {DEFAULT_DATA_DIR} lacks its files")
    raise DataError(
        f"Fashion-MNIST is not installed. Run `sudo apt-get install {DEBIAN_PACKAGE}` "
        "(Debian/Ubuntu), or pass --data DIR with MNIST-format IDX files."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="folder of MNIST-format IDX files")
    args = parser.parse_args(argv)
    try:
        data_dir = ensure_dataset(args.data)
        train, test = load_split(data_dir, "train"), load_split(data_dir, "t10k")
    except DataError as error:
        print(f"data: {error}", file=sys.stderr)
        return 1
    print(
        f"{data_dir}: {len(train.labels)} training and {len(test.labels)} test images, "
        f"classes {', '.join(class_names(data_dir))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
