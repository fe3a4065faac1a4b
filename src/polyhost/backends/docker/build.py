"""`polyhost images build`: the built-in stacks' images, with Docker's build log shown as it runs.

Each stack is built as `polyhost/<stack>:<version>` and tagged `polyhost/<stack>:latest` too;
the Docker backend runs `polyhost/<stack>` (no tag) as the image of this polyhost's version
when there is one. The build runs on the host's network (`network_mode=host`) so a daemon
without a bridge network (`dockerd --bridge=none`) can still fetch packages.

Where PyPI cannot be reached, `--pip-index-url` (a site mirror) and `--pip-find-links DIR`
(folders of wheels) say where pip in the build gets packages instead; without them the host's
own pip configuration is used, so a machine already set up for its mirror builds as it installs.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import polyhost
from polyhost.backends.docker.build_context import (
    STACKS,
    Checkout,
    ContextError,
    PipSource,
    assemble,
    build_wheel,
    gather_find_links,
    pip_source,
)
from polyhost.backends.docker.daemon import DaemonUnavailable, connect, first_line

DEFAULT_BASE_IMAGE = "python:3.11-slim"
# A build may download hundreds of MB: the API call waits as long as the build runs.
BUILD_TIMEOUT_S = 3600


class BuildError(Exception):
    """An image could not be built; the message ends with Docker's own error."""


@dataclass(frozen=True)
class BuildRequest:
    stacks: tuple[str, ...] = STACKS
    base_image: str = DEFAULT_BASE_IMAGE
    source: Path | None = None
    version: str = polyhost.__version__
    # Extra labels on every image (the tests' images use them); never secrets.
    labels: Mapping[str, str] = field(default_factory=dict)
    pip: PipSource = field(default_factory=PipSource)


def build_args(request: BuildRequest) -> dict[str, str]:
    """The Dockerfiles' build arguments. A pip index given for the site also serves torch: the
    CPU torch index is on the internet an air-gapped site cannot reach, so its mirror (or a
    find-links folder with the CPU wheel) must carry it."""
    args = {"BASE_IMAGE": request.base_image}
    if request.pip.index_url is not None:
        args["POLYHOST_PIP_INDEX_URL"] = request.pip.index_url
        args["TORCH_INDEX_URL"] = request.pip.index_url
    return args


def tags(stack: str, version: str) -> tuple[str, str]:
    return f"polyhost/{stack}:{version}", f"polyhost/{stack}:latest"


def build(request: BuildRequest, out: TextIO = sys.stdout) -> list[str]:
    """Build every requested stack; returns the tags made. BuildError / DaemonUnavailable /
    ContextError say what went wrong."""
    unknown = [s for s in request.stacks if s not in STACKS]
    if unknown:
        raise ContextError(
            f"unknown stack {', '.join(unknown)}; the stacks are {', '.join(STACKS)}"
        )
    checkout = Checkout.find(request.source)
    client = connect(BUILD_TIMEOUT_S)
    made: list[str] = []
    with tempfile.TemporaryDirectory(prefix="polyhost-images-") as scratch:
        print(f"building a wheel of {checkout.root}", file=out, flush=True)
        wheel = build_wheel(checkout, Path(scratch) / "wheel")
        extra: Path | None = None
        if request.pip.find_links:
            extra = Path(scratch) / "find-links"
            names = gather_find_links(request.pip.find_links, extra)
            shown = ", ".join(str(f) for f in request.pip.find_links)
            print(f"pip find-links: {len(names)} packages from {shown}", file=out, flush=True)
        if request.pip.index_url is not None:
            print(f"pip index: {request.pip.index_url}", file=out, flush=True)
        for stack in request.stacks:
            context = assemble(checkout, stack, Path(scratch) / stack, wheel, extra)
            versioned, latest = tags(stack, request.version)
            print(f"building {versioned} from {request.base_image}", file=out, flush=True)
            stream = client.api.build(
                path=str(context),
                tag=versioned,
                buildargs=build_args(request),
                labels=dict(request.labels),
                network_mode="host",
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            image_id = follow(stream, out.write, versioned)
            repository, _, tag = latest.rpartition(":")
            client.api.tag(image_id, repository, tag)
            print(f"built {versioned} and {latest} ({image_id[:19]})", file=out, flush=True)
            made += [versioned, latest]
    return made


def follow(stream: Iterable[Mapping[str, Any]], write: Callable[[str], object], what: str) -> str:
    """Show the build log as it comes; returns the image id, or raises BuildError."""
    image_id = ""
    last: list[str] = []
    for chunk in stream:
        if "error" in chunk:
            detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
            tail = "".join(last[-5:])
            raise BuildError(f"building {what} failed: {str(detail).strip()}\n{tail}".strip())
        text = chunk.get("stream")
        if isinstance(text, str):
            write(text)
            last = [*last[-9:], text]
        status = chunk.get("status")
        if isinstance(status, str):
            write(status + "\n")
        aux = chunk.get("aux")
        if isinstance(aux, Mapping) and isinstance(aux.get("ID"), str):
            image_id = aux["ID"]
    if not image_id:
        raise BuildError(f"building {what}: Docker reported no image id")
    return image_id


def main(
    stacks: list[str],
    base_image: str,
    source: Path | None,
    pip_index_url: str | None = None,
    pip_find_links: list[Path] | None = None,
) -> int:
    """The command's body: 0 when every image was built, 1 otherwise (with the reason)."""
    try:
        pip, notes = pip_source(pip_index_url, pip_find_links or [])
        for note in notes:
            print(f"polyhost images build: {note}", file=sys.stderr)
        request = BuildRequest(
            stacks=tuple(stacks) or STACKS, base_image=base_image, source=source, pip=pip
        )
        made = build(request)
    except (BuildError, ContextError, DaemonUnavailable) as error:
        print(f"polyhost images build: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # a daemon error mid-build: its message, not a traceback
        print(f"polyhost images build: {first_line(error)}", file=sys.stderr)
        return 1
    print("images: " + ", ".join(made))
    return 0
