"""Model data for containers on other machines: packed on the server, unpacked once per node.

The server fetches and extracts every model as it does for local containers (any source:
`file://`, `s3://`, `https://`), within the model size caps. For a Ray node it packs the
extracted folder as one tar (no compression: the bytes are in memory for the copy only) and puts
it in Ray's object store once; its SHA-256 names it. An agent that needs a model looks in its
node's cache by that digest and only fetches the object when it is not there, then unpacks it
with tarfile's `data` filter (no absolute paths, no `..`, no links leaving the folder, no device
files), into a temporary folder renamed into place, so two agents of one node never see half a
model.

A multi-model container's models travel the same way, one per load (`staging`), but are not
kept in the node's cache: each is unpacked into a folder of its own in that container's own
model folder (`<model folder>/<name>/model`, the layout of SageMaker's contract, a unique name
per load), and removed when it is unloaded, when the container starts again and when it stops.
So a node holds the models its containers have loaded, and no others.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

# The contract's switch: the container serves many models, loaded through POST /models.
MULTI_MODEL_ENV = "SAGEMAKER_MULTI_MODEL"
# A staged model's folder name: a digest of its TargetModel, then a random part (per load).
_STAGED_NAME = re.compile(r"[0-9a-f]{24}-[0-9a-f]{8}")


class ModelTooLarge(Exception):
    """The packed model is larger than the server's model size cap."""


def pack(folder: Path, max_bytes: int) -> tuple[str, bytes]:
    """The folder as an uncompressed tar (sorted, so a folder always packs alike) and its digest."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(folder.rglob("*")):
            archive.add(path, arcname=str(path.relative_to(folder)), recursive=False)
            if buffer.tell() > max_bytes:
                raise ModelTooLarge(f"model folder {folder} is larger than {max_bytes} bytes")
    data = buffer.getvalue()
    return hashlib.sha256(data).hexdigest(), data


def is_empty(folder: Path) -> bool:
    try:
        return not any(folder.iterdir())
    except OSError:
        return True


def cached(cache: Path, digest: str) -> Path | None:
    folder = cache / digest
    return folder if folder.is_dir() else None


def unpack(cache: Path, digest: str, data: bytes) -> Path:
    """Extract `data` (checked against `digest`) into `cache/<digest>`; returns that folder."""
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"model data does not match its digest {digest}")
    final = cache / digest
    if final.is_dir():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=cache))
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            archive.extractall(staging, filter="data")
        try:
            os.rename(staging, final)
        except OSError:
            if not final.is_dir():  # not a concurrent unpack of the same model
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def serves_many_models(environment: Mapping[str, str]) -> bool:
    """Whether a container is a multi-model one, as its contract environment says."""
    return environment.get(MULTI_MODEL_ENV, "").strip().lower() == "true"


def staged_name(target: str) -> str:
    """A new folder name for one load of the model `target` (the same layout as Docker's)."""
    digest = hashlib.sha256(target.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return f"{digest}-{secrets.token_hex(4)}"


def _staged_folder(parent: Path, name: str) -> Path:
    """`parent/name` for a name `staged_name` made; a ValueError for anything else, so a call
    can never name a folder outside the container's model folder, nor one it did not stage."""
    if not _STAGED_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not the name of a staged model")
    return parent / name


def unpack_staged(parent: Path, name: str, digest: str, data: bytes) -> Path:
    """Extract `data` (checked against `digest`) into `parent/<name>/model` with tarfile's
    `data` filter, through a hidden folder renamed into place (the container never sees half a
    model); returns the model's folder. Raises, having removed what it made."""
    final = _staged_folder(parent, name)
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"model data does not match its digest {digest}")
    parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=parent))
    try:
        (partial / "model").mkdir()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            archive.extractall(partial / "model", filter="data")
        os.rename(partial, final)
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)
    return final / "model"


def remove_staged(parent: Path, name: str) -> None:
    """Remove one staged model (one already gone is no error)."""
    shutil.rmtree(_staged_folder(parent, name), ignore_errors=True)


def clear_staged(parent: Path) -> None:
    """Remove every staged model of a container (and any half-unpacked one): it starts again,
    or stops, with no model loaded."""
    try:
        children = list(parent.iterdir())
    except FileNotFoundError:
        return
    for child in children:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
