"""Model data for containers on other machines: packed on the server, unpacked once per node.

The server fetches and extracts every model as it does for local containers (any source:
`file://`, `s3://`, `https://`), within the model size caps. For a Ray node it packs the
extracted folder as one tar (no compression: the bytes are in memory for the copy only) and puts
it in Ray's object store once; its SHA-256 names it. An agent that needs a model looks in its
node's cache by that digest and only fetches the object when it is not there, then unpacks it
with tarfile's `data` filter (no absolute paths, no `..`, no links leaving the folder, no device
files), into a temporary folder renamed into place, so two agents of one node never see half a
model.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path


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
