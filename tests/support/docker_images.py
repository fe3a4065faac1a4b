"""The images the Docker tests run, built on the test daemon (Docker's cache makes it cheap).

- `polyhost/sklearn:<version>`: the built-in stack's image, by `polyhost images build`.
- BYO_IMAGE: `docker_byo/`, a few lines of http.server, labelled as accepting a port.
- NOLABEL_IMAGE: the same without the label (the endpoint must fail with the reason).

`python -m tests.support.docker_images` builds them (what scripts/docker-up.sh runs).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import polyhost
from polyhost.backends.docker.build import BuildRequest, build, follow
from polyhost.backends.docker.images import ACCEPT_BIND_TO_PORT
from tests.support import docker_env

BYO_IMAGE = "polyhost-test/byo:1"
NOLABEL_IMAGE = "polyhost-test/byo-nolabel:1"
# The BYO image under another name, so images.toml can give it a memory limit of its own.
SMALL_IMAGE = "polyhost-test/byo:small"
SKLEARN_IMAGE = f"polyhost/sklearn:{polyhost.__version__}"
BYO_CONTEXT = Path(__file__).parent / "docker_byo"


def build_byo(client: Any, base_image: str, out: Any) -> None:
    for tag, labels in ((BYO_IMAGE, {ACCEPT_BIND_TO_PORT: "true"}), (NOLABEL_IMAGE, {})):
        stream = client.api.build(
            path=str(BYO_CONTEXT),
            tag=tag,
            buildargs={"BASE_IMAGE": base_image},
            labels=labels,
            network_mode="host",
            rm=True,
            pull=False,
            decode=True,
        )
        image_id = follow(stream, out.write, tag)
        if tag == BYO_IMAGE:
            repository, _, small = SMALL_IMAGE.partition(":")
            client.api.tag(image_id, repository, small)


def build_all(out: Any = None) -> None:
    """Build (or find in Docker's cache) every test image; raises on a failed build."""
    from polyhost.backends.docker.daemon import connect

    docker_env.apply()
    sink = out if out is not None else io.StringIO()
    base = docker_env.base_image()
    build(BuildRequest(stacks=("sklearn",), base_image=base), out=sink)
    build_byo(connect(3600), base, sink)


if __name__ == "__main__":
    build_all(sys.stdout)
