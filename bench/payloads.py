"""Request bodies of the benchmarks, written once per run into the scenario's work folder."""

from __future__ import annotations

import random
from pathlib import Path

SIZES = {"1KB": 1024, "64KB": 64 * 1024, "1MB": 1024 * 1024}


def json_body(size: int, seed: int = 7) -> bytes:
    """A JSON document of about `size` bytes (never more): `{"instances": [[floats...]]}`."""
    rng = random.Random(seed)
    head, tail = b'{"instances": [[', b"]]}"
    parts: list[bytes] = []
    length = len(head) + len(tail)
    while True:
        item = b"%.6f" % rng.uniform(-1, 1)
        extra = len(item) + (2 if parts else 0)
        if length + extra > size:
            break
        parts.append(item)
        length += extra
    return head + b", ".join(parts) + tail


def write_bodies(folder: Path, sizes: dict[str, int] | None = None) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for label, size in (sizes or SIZES).items():
        path = folder / f"body-{label}.json"
        if not path.exists() or abs(path.stat().st_size - size) > 64:
            path.write_bytes(json_body(size))
        paths[label] = path
    return paths
