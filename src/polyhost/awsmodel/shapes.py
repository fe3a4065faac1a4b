"""An AWS service's shapes, read from the service model botocore ships (`service-2.json`).

That file is the ground truth for every member, length, pattern, range and enum, so validation
and output shaping walk it instead of restating it. It is read as plain JSON, without importing
botocore: `botocore.loaders` pulls in urllib3 and friends (~0.25 s), which would double the
server's start time for nothing. Only the shapes reachable from the operations polyhost serves
are kept, which keeps the idle memory small (the whole model is ~2.6 MB of JSON), and that
reduced model can be cached so a start need not parse the whole file at all.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Shape:
    """One shape of the model, with the constraints validation needs."""

    name: str
    type: str
    members: dict[str, str]  # structure: member name -> shape name, in model order
    required: frozenset[str]
    member: str | None = None  # list: element shape
    key: str | None = None  # map: key shape
    value: str | None = None  # map: value shape
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Operation:
    name: str
    input: str | None
    output: str | None


class Schema:
    """The shapes of a set of operations; `all_operations` names every operation of the API,
    `error_shapes` maps each error code of the API to its exception shape's name."""

    def __init__(
        self,
        shapes: dict[str, Shape],
        operations: dict[str, Operation],
        all_operations: frozenset[str],
        error_shapes: dict[str, str] | None = None,
    ) -> None:
        self._shapes = shapes
        self.operations = operations
        self.all_operations = all_operations
        self.error_shapes: dict[str, str] = error_shapes or {}

    def shape(self, name: str) -> Shape:
        return self._shapes[name]

    def input(self, operation: str) -> Shape | None:
        name = self.operations[operation].input
        return self._shapes[name] if name else None

    def output(self, operation: str) -> Shape | None:
        name = self.operations[operation].output
        return self._shapes[name] if name else None

    def member(self, structure: Shape, member: str) -> Shape:
        return self._shapes[structure.members[member]]


def model_path(service: str) -> Path:
    """The newest `service-2.json(.gz)` of `service` inside the installed botocore."""
    spec = importlib.util.find_spec("botocore")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"botocore is not installed; polyhost needs its {service} model")
    base = Path(next(iter(spec.submodule_search_locations))) / "data" / service
    versions = sorted(p for p in base.iterdir() if p.is_dir())
    if not versions:
        raise RuntimeError(f"botocore has no service model for {service} under {base}")
    for candidate in ("service-2.json.gz", "service-2.json"):
        path = versions[-1] / candidate
        if path.exists():
            return path
    raise RuntimeError(f"no service-2.json in {versions[-1]}")


def _read_model(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    model: dict[str, Any] = json.loads(raw)
    return model


def _shape(name: str, raw: dict[str, Any]) -> Shape:
    def ref(key: str) -> str | None:
        target = raw.get(key)
        return str(target["shape"]) if isinstance(target, dict) else None

    members = raw.get("members", {})
    enum = raw.get("enum")
    return Shape(
        name=name,
        type=str(raw["type"]),
        members={member: str(spec["shape"]) for member, spec in members.items()},
        required=frozenset(raw.get("required", ())),
        member=ref("member"),
        key=ref("key"),
        value=ref("value"),
        min=raw.get("min"),
        max=raw.get("max"),
        pattern=raw.get("pattern"),
        enum=tuple(enum) if enum is not None else None,
    )


def _reduce(model: dict[str, Any], operations: Iterable[str]) -> dict[str, Any]:
    """The part of the model `operations` need: their shapes, without documentation."""
    raw_shapes: dict[str, Any] = model["shapes"]
    raw_operations: dict[str, Any] = model["operations"]
    shapes: dict[str, Any] = {}
    chosen: dict[str, dict[str, str | None]] = {}

    def visit(name: str) -> None:
        pending = [name]
        while pending:
            current = pending.pop()
            if current in shapes:
                continue
            raw = {k: v for k, v in raw_shapes[current].items() if k != "documentation"}
            for ref in ("member", "key", "value"):
                if ref in raw:
                    raw[ref] = {"shape": raw[ref]["shape"]}
                    pending.append(raw[ref]["shape"])
            if "members" in raw:
                raw["members"] = {m: {"shape": spec["shape"]} for m, spec in raw["members"].items()}
                pending.extend(spec["shape"] for spec in raw["members"].values())
            shapes[current] = raw

    for operation in operations:
        spec = raw_operations[operation]
        names = {
            "input": spec.get("input", {}).get("shape"),
            "output": spec.get("output", {}).get("shape"),
        }
        for shape_name in names.values():
            if shape_name:
                visit(shape_name)
        chosen[operation] = names
    errors = {
        str(raw.get("error", {}).get("code", name)): name
        for name, raw in raw_shapes.items()
        if raw.get("exception")
    }
    return {
        "shapes": shapes,
        "operations": chosen,
        "all_operations": sorted(raw_operations),
        "errors": errors,
    }


def _build(reduced: dict[str, Any]) -> Schema:
    shapes = {name: _shape(name, raw) for name, raw in reduced["shapes"].items()}
    operations = {
        name: Operation(name, spec["input"], spec["output"])
        for name, spec in reduced["operations"].items()
    }
    errors = {str(code): str(name) for code, name in reduced["errors"].items()}
    return Schema(shapes, operations, frozenset(reduced["all_operations"]), errors)


def load_schema(
    service: str,
    operations: Iterable[str],
    path: Path | None = None,
    cache_dir: Path | None = None,
) -> Schema:
    """The shapes of botocore's `service` model reachable from `operations` (in and out).

    With `cache_dir`, the reduced model is kept there (~1/30 of the whole, read in a
    millisecond), keyed by the model file's identity and the operations: a botocore upgrade
    simply misses the cache. Any trouble with the cache falls back to the model itself.
    """
    operations = list(operations)
    path = path or model_path(service)
    cache: Path | None = None
    if cache_dir is not None:
        stat = path.stat()
        key = json.dumps([str(path), stat.st_mtime_ns, stat.st_size, sorted(operations)])
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        cache = cache_dir / f"{service}-shapes-{digest}.json"
        try:
            return _build(json.loads(cache.read_bytes()))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # absent or unreadable: rebuild it below
    reduced = _reduce(_read_model(path), operations)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(reduced, separators=(",", ":")), encoding="utf-8")
            os.replace(partial, cache)
        except OSError:
            pass  # a read-only state dir only costs start time
    return _build(reduced)


def project(schema: Schema, shape: Shape, value: Any) -> Any:
    """Keep only what `shape` knows, recursively, dropping nulls.

    Used on validated input (unknown members are ignored, as AWS does for forward
    compatibility, and never stored) and on output (a stored request echoed by Describe loses
    members the output shape lacks, such as Tags).
    """
    if shape.type == "structure" and isinstance(value, dict):
        out: dict[str, Any] = {}
        for member, target in shape.members.items():
            item = value.get(member)
            if item is not None:
                out[member] = project(schema, schema.shape(target), item)
        return out
    if shape.type == "list" and isinstance(value, list) and shape.member:
        element = schema.shape(shape.member)
        return [project(schema, element, item) for item in value if item is not None]
    if shape.type == "map" and isinstance(value, dict) and shape.value:
        target_shape = schema.shape(shape.value)
        return {k: project(schema, target_shape, v) for k, v in value.items() if v is not None}
    return value
