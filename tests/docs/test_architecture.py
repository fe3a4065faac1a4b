"""docs/architecture.md keeps its picture true: every package folder is in its table, and its
layer list is the import-linter contract in pyproject.toml, layer for layer."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
PACKAGE = ROOT / "src" / "polyhost"


def package_folders() -> list[str]:
    """Every folder of polyhost that is a package, as `backends/process/`."""
    return sorted(
        str(init.parent.relative_to(PACKAGE)) + "/"
        for init in PACKAGE.rglob("__init__.py")
        if init.parent != PACKAGE
        and "stacks" not in init.parent.relative_to(PACKAGE).parts[1:]
        and "__pycache__" not in init.parts
    )


def documented_folders() -> set[str]:
    table = DOC[DOC.index("## Where things are") :]
    return set(re.findall(r"`([a-z_/]+/)`", table))


def test_every_package_folder_is_in_the_table() -> None:
    missing = [folder for folder in package_folders() if folder not in documented_folders()]
    # The stacks are listed as one row: each stack is a program of its own.
    missing = [folder for folder in missing if not folder.startswith("stacks/")]
    assert not missing, f"docs/architecture.md's table does not name {missing}"


def test_the_layer_list_is_the_import_linter_contract() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    expected = [sorted(part.strip() for part in layer.split("|")) for layer in contract["layers"]]
    block = DOC[DOC.index("## Layers") :]
    block = block[block.index("```") + 3 :]
    block = block[: block.index("```")]
    documented: list[list[str]] = []
    for line in block.strip("\n").splitlines():
        packages = re.split(r"\s{3,}", line.strip())[0]  # the first column
        names = re.findall(r"polyhost\.[a-z_]+", packages)
        if line.startswith("  "):  # a layer continued on the next line
            documented[-1] += names
        elif names:
            documented.append(names)
    assert [sorted(layer) for layer in documented] == expected


def test_every_shared_backend_module_is_held_apart_from_the_backends() -> None:
    """backends/'s shared modules are listed one by one in an import-linter contract (a
    forbidden contract cannot say "all but the three folders"): a new one must join it."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(
        c
        for c in config["tool"]["importlinter"]["contracts"]
        if c["name"] == "What the backends share imports none of them"
    )
    shared = {
        f"polyhost.backends.{path.stem}"
        for path in (PACKAGE / "backends").glob("*.py")
        if path.stem not in ("__init__", "factory")
    }
    assert shared == set(contract["source_modules"])
