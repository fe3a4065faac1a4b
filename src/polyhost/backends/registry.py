"""The image registry: which image names this server can run, and how.

Built-in images (`polyhost/pytorch`, `polyhost/tensorflow`, `polyhost/sklearn`,
`polyhost/xgboost`, `polyhost/huggingface`) run their stack module with a Python interpreter
that can be set per image, so TensorFlow and PyTorch may live in separate virtual environments.
User images come from `--image-config images.toml`:

    [images."acme/echo:1"]
    command = ["python3", "/srv/echo_server.py"]
    python = "/opt/venvs/x/bin/python"   # optional; for python stacks

    [images."polyhost/tensorflow"]       # overrides a built-in's interpreter
    python = "/opt/venvs/tf/bin/python"
    memory = "2GiB"                      # optional resource limits of every container
    cpus = 1.5                           # of this image (enforced where the OS allows)

    [images."acme/mms:1"]
    command = ["/srv/mms"]
    multi_models = true                  # serves SageMaker's multi-model API (Mode: MultiModel)

Image names match exactly; a built-in also matches with a tag (`polyhost/sklearn:1.0`).
SageMaker's framework image URIs (`<account>.dkr.ecr.<region>.amazonaws.com/` and
`tensorflow-inference:2.3.1-cpu`, ..., matched by repository name: `polyhost.framework_images`,
docs/images.md) run the built-in stack of their framework, which is told the URI
(`--sagemaker-image URI`) so that it can say in the container log which framework version
serves it. An images.toml entry of the exact URI wins.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyhost import framework_images
from polyhost.backends.base import ImageNotFound, ResourceLimits

# The built-in stacks that serve many models in one process (`stacks.toolkit.multi_model`):
# every built-in stack, each loaded model a service of its own (`for_model`).
MULTI_MODEL_BUILTINS = frozenset(
    {
        "polyhost/pytorch",
        "polyhost/sklearn",
        "polyhost/xgboost",
        "polyhost/huggingface",
        "polyhost/tensorflow",
    }
)
BUILTIN_MODULES = {
    "polyhost/pytorch": "polyhost.stacks.pytorch",
    "polyhost/tensorflow": "polyhost.stacks.tensorflow",
    "polyhost/sklearn": "polyhost.stacks.sklearn",
    "polyhost/xgboost": "polyhost.stacks.xgboost",
    "polyhost/huggingface": "polyhost.stacks.huggingface",
}
# The argument a built-in stack gets when it runs for a SageMaker framework image URI.
SAGEMAKER_IMAGE_FLAG = "--sagemaker-image"


class ImageConfigError(Exception):
    """images.toml is malformed; the message says where."""


@dataclass(frozen=True)
class ImageEntry:
    name: str
    command: tuple[str, ...]
    builtin: bool = False
    limits: ResourceLimits = field(default_factory=ResourceLimits)
    # Whether the image serves SageMaker's multi-model API (`POST /models`, ...) when started
    # with SAGEMAKER_MULTI_MODEL=true, so CreateModel may give it `Mode: MultiModel`.
    multi_models: bool = False


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}


def parse_size(text: str) -> int:
    """Bytes from "512MiB", "2GiB", "1.5G", "1000000" (Ki/Mi/Gi are powers of 1024)."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (use e.g. 512MiB or 2GiB)")
    number, unit = float(match.group(1)), (match.group(2) or "").upper()
    if unit.startswith(("KI", "MI", "GI", "TI")):
        factor = 1024 ** ("KMGT".index(unit[0]) + 1)
    else:
        factor = _UNITS[unit[:1]]
    return int(number * factor)


def _limits(config_path: Path, name: str, table: dict[str, Any]) -> ResourceLimits:
    memory = table.get("memory")
    cpus = table.get("cpus")
    try:
        memory_bytes = None if memory is None else parse_size(str(memory))
    except ValueError as error:
        raise ImageConfigError(f'{config_path}: images."{name}".memory: {error}') from None
    if cpus is not None and (not isinstance(cpus, int | float) or cpus <= 0):
        raise ImageConfigError(f'{config_path}: images."{name}".cpus must be a positive number')
    return ResourceLimits(memory_bytes=memory_bytes, cpus=None if cpus is None else float(cpus))


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
        self._admitted: Callable[[str], bool] | None = None
        self._admitted_multi: Callable[[str], bool] | None = None

    def admit(
        self, rule: Callable[[str], bool], multi_models: Callable[[str], bool] | None = None
    ) -> None:
        """Also know every image `rule` accepts. A backend that runs real images (Docker) can
        run any image reference; whether it exists is only learnt when an endpoint starts.
        `multi_models` says which of those serve many models (Docker: the image's label)."""
        self._admitted = rule
        self._admitted_multi = multi_models

    @classmethod
    def load(cls, config_path: Path | None) -> ImageRegistry:
        pythons: dict[str, str] = {}
        builtin_limits: dict[str, ResourceLimits] = {}
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
                limits = _limits(Path(config_path), name, table)
                if name in BUILTIN_MODULES and command is None:
                    if python:
                        pythons[name] = python
                    builtin_limits[name] = limits
                    continue
                multi_models = table.get("multi_models", False)
                if not isinstance(multi_models, bool):
                    raise ImageConfigError(
                        f'{config_path}: images."{name}".multi_models must be true or false'
                    )
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
                user[name] = ImageEntry(
                    name=name, command=tuple(command), limits=limits, multi_models=multi_models
                )
        entries = {
            name: ImageEntry(
                name=name,
                command=(pythons.get(name, sys.executable), "-m", module),
                builtin=True,
                limits=builtin_limits.get(name, ResourceLimits()),
                multi_models=name in MULTI_MODEL_BUILTINS,
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
        if builtin is not None:
            return self._entries.get(builtin)
        return self._framework_entry(image)

    def _framework_entry(self, image: str) -> ImageEntry | None:
        """The built-in stack's entry for a SageMaker framework URI (None for a GPU one).

        A built-in's command gets the URI as an argument; a built-in replaced by a command of
        the user's (images.toml) runs that command as it is."""
        stack = framework_images.builtin_image(image)
        entry = self._entries.get(stack) if stack is not None else None
        if entry is None or not entry.builtin:
            return entry
        return dataclasses.replace(entry, command=(*entry.command, SAGEMAKER_IMAGE_FLAG, image))

    def limits(self, image: str) -> ResourceLimits:
        entry = self.resolve(image)
        return entry.limits if entry is not None else ResourceLimits()

    def serves_multiple_models(self, image: str) -> bool:
        """Whether `image` serves SageMaker's multi-model API: its entry says so, or, for an
        image admitted only by a backend's rule, that backend's `multi_models` rule does."""
        entry = self.resolve(image)
        if entry is not None:
            return entry.multi_models
        return (
            self._admitted is not None
            and self._admitted_multi is not None
            and self._admitted(image)
            and self._admitted_multi(image)
        )

    def knows_image(self, image: str) -> bool:
        if self.resolve(image) is not None:
            return True
        return self._admitted is not None and self._admitted(image)

    def known_images(self) -> list[str]:
        return sorted(self._entries)

    def not_known(self, image: str) -> ImageNotFound:
        """The error for an image this server cannot run; it names the images it can."""
        return ImageNotFound(
            f"Image {image} is not known to this server. Known images: "
            f"{', '.join(self.known_images())}."
        )


class RegistryImages:
    """`Backend`'s image questions, answered by the server's image registry (`_images`).

    Every backend takes its images from the one registry the server loaded (`--image-config`),
    so every backend answers the same; a backend that knows more images (Docker: any
    reference) overrides `knows_image`."""

    _images: ImageRegistry

    def knows_image(self, image: str) -> bool:
        return self._images.knows_image(image)

    def image_limits(self, image: str) -> ResourceLimits:
        """The resource limits configured for every container of `image`."""
        return self._images.limits(image)

    def known_images(self) -> list[str]:
        return self._images.known_images()
