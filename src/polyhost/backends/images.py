"""The image registry: which image names this server can run, and how.

Built-in images (`polyhost/pytorch`, `polyhost/tensorflow`, `polyhost/sklearn`) run their stack
module with a Python interpreter that can be set per image, so TensorFlow and PyTorch may live in
separate virtual environments. User images come from `--image-config images.toml`:

    [images."acme/echo:1"]
    command = ["python3", "/srv/echo_server.py"]
    python = "/opt/venvs/x/bin/python"   # optional; for python stacks

    [images."polyhost/tensorflow"]       # overrides a built-in's interpreter
    python = "/opt/venvs/tf/bin/python"

Image names match exactly; a built-in also matches with a tag (`polyhost/sklearn:1.0`).
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

BUILTIN_MODULES = {
    "polyhost/pytorch": "polyhost.stacks.pytorch",
    "polyhost/tensorflow": "polyhost.stacks.tensorflow",
    "polyhost/sklearn": "polyhost.stacks.sklearn",
}


class ImageConfigError(Exception):
    """images.toml is malformed; the message says where."""


@dataclass(frozen=True)
class ImageEntry:
    name: str
    command: tuple[str, ...]
    builtin: bool = False


def _builtin_name(image: str) -> str | None:
    base = image.split("@", 1)[0]
    if base in BUILTIN_MODULES:
        return base
    repo, _, tag = base.rpartition(":")
    if repo in BUILTIN_MODULES and tag and "/" not in tag:
        return repo
    return None


class ImageRegistry:
    def __init__(self, entries: dict[str, ImageEntry]) -> None:
        self._entries = entries

    @classmethod
    def load(cls, config_path: Path | None) -> ImageRegistry:
        pythons: dict[str, str] = {}
        user: dict[str, ImageEntry] = {}
        if config_path is not None:
            try:
                data = tomllib.loads(Path(config_path).read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as error:
                raise ImageConfigError(f"cannot read image config {config_path}: {error}") from None
            images = data.get("images", {})
            if not isinstance(images, dict):
                raise ImageConfigError(f"{config_path}: [images] must be a table")
            for name, table in images.items():
                if not isinstance(table, dict):
                    raise ImageConfigError(f'{config_path}: [images."{name}"] must be a table')
                python = table.get("python")
                if python is not None and not isinstance(python, str):
                    raise ImageConfigError(f'{config_path}: images."{name}".python: not a string')
                command = table.get("command")
                if name in BUILTIN_MODULES and command is None:
                    if python:
                        pythons[name] = python
                    continue
                if not (
                    isinstance(command, list)
                    and command
                    and all(isinstance(part, str) for part in command)
                ):
                    raise ImageConfigError(
                        f'{config_path}: images."{name}".command must be a non-empty list of '
                        "strings"
                    )
                if python and command[0] in ("python", "python3"):
                    command = [python, *command[1:]]
                user[name] = ImageEntry(name=name, command=tuple(command))
        entries = {
            name: ImageEntry(
                name=name,
                command=(pythons.get(name, sys.executable), "-m", module),
                builtin=True,
            )
            for name, module in BUILTIN_MODULES.items()
        }
        entries.update(user)
        return cls(entries)

    def resolve(self, image: str) -> ImageEntry | None:
        entry = self._entries.get(image)
        if entry is not None:
            return entry
        builtin = _builtin_name(image)
        return self._entries.get(builtin) if builtin else None

    def knows_image(self, image: str) -> bool:
        return self.resolve(image) is not None

    def known_images(self) -> list[str]:
        return sorted(self._entries)
