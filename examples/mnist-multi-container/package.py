"""Pack trained models into model.tar.gz the way SageMaker's framework containers expect them.

    pytorch:    model.pth            the state_dict
                code/inference.py    model_fn / input_fn / predict_fn / output_fn
    tensorflow: model/1/saved_model.pb, model/1/variables/...   (model "model", version 1)

These archives would work unchanged on SageMaker; polyhost/pytorch and polyhost/tensorflow read
them the same way. Members are added with fixed owner and mode, so packing the same files twice
gives archives with the same content.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from train_pytorch import INFERENCE_SCRIPT
from train_tensorflow import EXPORT_SUBDIR


def _normalized(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def _pack(archive: Path, members: list[tuple[Path, str]]) -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for source, name in members:
            tar.add(source, arcname=name, filter=_normalized)
    partial.replace(archive)  # never leave a half-written archive under the final name
    return archive


def package_pytorch(trained_dir: Path, archive: Path) -> Path:
    """`<trained_dir>/model.pth` + the inference script → `archive`."""
    state_dict = trained_dir / "model.pth"
    if not state_dict.is_file():
        raise FileNotFoundError(f"{state_dict} is missing: run train_pytorch.py first")
    return _pack(archive, [(state_dict, "model.pth"), (INFERENCE_SCRIPT, "code/inference.py")])


def package_tensorflow(trained_dir: Path, archive: Path) -> Path:
    """`<trained_dir>/model/1/` (a SavedModel) → `archive` with the same layout."""
    export = trained_dir / EXPORT_SUBDIR
    if not (export / "saved_model.pb").is_file():
        raise FileNotFoundError(f"{export}/saved_model.pb is missing: run train_tensorflow.py")
    return _pack(archive, [(export, EXPORT_SUBDIR.as_posix())])


def members(archive: Path) -> list[str]:
    """The file names in an archive, for printing what was packed."""
    with tarfile.open(archive, "r:gz") as tar:
        return sorted(member.name for member in tar.getmembers() if member.isfile())
