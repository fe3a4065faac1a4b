"""Find the SavedModels in a model directory, laid out as SageMaker's TensorFlow container expects.

SageMaker's container walks the model directory for `saved_model.pb` files whose folder is a
number: that folder is a *version*, its parent a *model* named after the parent folder. So

    <model_dir>/1/saved_model.pb                 model "model", version 1 (the directory is
                                                 /opt/ml/model in SageMaker, hence the name)
    <model_dir>/mnist/00000002/saved_model.pb    model "mnist", version 2
    <model_dir>/export/Servo/1565/saved_model.pb model "Servo" (an Estimator export)

are all found; every version of every model is served, the highest version answers unless a
request names one. As an extension, a SavedModel that is not in a numbered folder (at the root
of the model directory or directly in `<model_dir>/<name>/`) is served as version 1 instead of
failing the container. `code/` (the inference script) is never searched.

No TensorFlow here: this runs before the (slow) import, so a bad layout fails fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
# The name SageMaker's container gives a model whose versions sit at the top of the directory.
ROOT_MODEL_NAME = "model"


class LayoutError(ValueError):
    """The model directory holds no servable SavedModel, or an ambiguous set of them."""


@dataclass
class ModelSource:
    """One named model and its version folders (version number -> folder)."""

    name: str
    base: Path
    versions: dict[int, Path] = field(default_factory=dict)

    @property
    def latest(self) -> int:
        return max(self.versions)


def _is_saved_model(files: list[str]) -> bool:
    return any(name in files for name in SAVED_MODEL_FILES)


def _is_version(name: str) -> bool:
    return name.isascii() and name.isdigit()


def discover(model_dir: Path) -> list[ModelSource]:
    """Every model under `model_dir`, sorted by path (the first is the default model)."""
    if not model_dir.is_dir():
        raise LayoutError(f"model directory {model_dir} does not exist")
    root = model_dir.resolve()
    sources: dict[Path, ModelSource] = {}
    for current, dirs, files in os.walk(root):
        folder = Path(current)
        if folder == root and "code" in dirs:
            dirs.remove("code")
        dirs.sort()
        if not _is_saved_model(files):
            continue
        dirs.clear()  # a SavedModel's own subfolders (variables/, assets/) hold no others
        if _is_version(folder.name) and folder != root:
            base, version = folder.parent, int(folder.name)
        elif folder == root or folder.parent == root:
            base, version = folder, 1  # extension: an unversioned SavedModel is version 1
        else:
            continue  # SageMaker ignores these too
        name = ROOT_MODEL_NAME if base == root else base.name
        source = sources.setdefault(base, ModelSource(name=name, base=base))
        if version in source.versions:
            raise LayoutError(
                f"model {name!r} has version {version} twice ({source.versions[version].name} "
                f"and {folder.name}); keep one folder per version number"
            )
        source.versions[version] = folder
    if not sources:
        raise LayoutError(
            f"no SavedModel found in {model_dir}: expected <model_dir>/<version>/saved_model.pb "
            "or <model_dir>/<model name>/<version>/saved_model.pb (version: a number, e.g. 1)"
        )
    ordered = [sources[base] for base in sorted(sources)]
    seen: dict[str, Path] = {}
    for source in ordered:
        if source.name in seen:
            raise LayoutError(
                f"two models are named {source.name!r} ({seen[source.name]} and {source.base}); "
                "model names come from the folder holding the version folders and must differ"
            )
        seen[source.name] = source.base
    return ordered


def default_model_name(sources: list[ModelSource], configured: str | None) -> str:
    """SAGEMAKER_TFS_DEFAULT_MODEL_NAME when set (it must exist), else the first model found."""
    names = [source.name for source in sources]
    if configured is None:
        return names[0]
    if configured not in names:
        raise LayoutError(
            f"SAGEMAKER_TFS_DEFAULT_MODEL_NAME={configured!r} names no model here; models found: "
            + ", ".join(names)
        )
    return configured
