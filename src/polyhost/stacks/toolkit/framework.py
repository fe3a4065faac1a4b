"""Which framework version serves a SageMaker framework image, said once in the container log.

A model deployed as `.../tensorflow-inference:2.3.1-cpu` runs on the stack's own TensorFlow,
which is likely another version. That is usually fine (SavedModels, TorchScript and pickles load
across many versions), and when it is not, the model fails to load with the framework's own
reason. The one line printed at start says what to look at in that case. polyhost passes the URI
as `--sagemaker-image URI`; without it (a `polyhost/<stack>` image) nothing is printed.

The version a tag asks for is its first word (`2.3.1-cpu`, `1.8.1-cpu-py36`; SageMaker's
scikit-learn and XGBoost tags add a container revision, `1.2-1-cpu-py3`), or for Hugging Face the
word after `transformers` (`2.1.0-transformers4.37.0-cpu-py310`). The installed version is read
from the package's metadata, so the (slow) framework import is not brought forward.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from collections.abc import Sequence

FLAG = "--sagemaker-image"
_VERSION = re.compile(r"^\d+(?:\.\d+)*$")


def requested_image(argv: Sequence[str]) -> str | None:
    """The URI after `--sagemaker-image` (or `--sagemaker-image=URI`), else None."""
    for index, argument in enumerate(argv):
        if argument == FLAG and index + 1 < len(argv):
            return argv[index + 1]
        if argument.startswith(FLAG + "="):
            return argument.split("=", 1)[1]
    return None


def tag_version(image: str, marker: str | None = None) -> str | None:
    """The framework version the image's tag names (see the module docstring), or None."""
    reference = image.split("@", 1)[0]
    repository, _, tag = reference.rpartition(":")
    if not repository or "/" in tag:
        return None
    words = tag.split("-")
    if marker is not None:
        words = [word[len(marker) :] for word in words if word.startswith(marker)]
    if not words or not _VERSION.match(words[0]):
        return None
    return words[0]


def installed_version(distributions: Sequence[str]) -> str | None:
    """The version of the first of `distributions` installed (e.g. tensorflow, tensorflow-cpu)."""
    for name in distributions:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def same_release(asked: str, served: str) -> bool:
    """True when `served` is the release `asked` names: 1.2 is served by 1.2.2, not by 1.3."""
    served_parts = re.split(r"[.+]", served)
    asked_parts = asked.split(".")
    return served_parts[: len(asked_parts)] == asked_parts


def version_note(
    image: str, framework: str, distributions: Sequence[str], marker: str | None = None
) -> str | None:
    """The log line for `image`, or None when its tag names no version or the one served."""
    asked = tag_version(image, marker)
    served = installed_version(distributions)
    if asked is None or served is None or same_release(asked, served):
        return None
    return (
        f"polyhost stack: image {image} names {framework} {asked}; {framework} {served} serves it"
    )


def announce(
    framework: str,
    distributions: Sequence[str],
    marker: str | None = None,
    argv: Sequence[str] | None = None,
) -> None:
    """Print `version_note` for the image this stack runs for, once, to the container log."""
    image = requested_image(sys.argv[1:] if argv is None else argv)
    if image is None:
        return
    note = version_note(image, framework, distributions, marker)
    if note is not None:
        print(note, file=sys.stderr, flush=True)
