"""Which image a container runs, whether the daemon has it, and whether it takes a port.

- Any syntactically valid reference is accepted when a model is created: as on SageMaker,
  whether the image exists is only learnt when an endpoint starts (and the endpoint then
  fails with the reason).
- `polyhost/<stack>` without a tag means this polyhost's version of the built-in image
  (`polyhost images build`), falling back to `:latest`.
- A SageMaker framework image URI (`polyhost.framework_images`) runs as it is when the daemon
  has it (a Deep Learning Container the user pulled), else its framework's built-in image
  (which needs no registry login). Under `--docker-pull always` a failed pull of such a URI
  falls back the same way.
- Pulls follow `--docker-pull`: never (the default: images must be on the daemon), missing,
  always.
- Every container of an endpoint shares the host's ports, so an image must honour
  SAGEMAKER_BIND_TO_PORT, which it declares with SageMaker's label
  `com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true`. An image without it fails
  to start, as it does on a SageMaker multi-container endpoint.
- A `Mode: MultiModel` container needs an image that serves SageMaker's multi-model API, which
  an image declares with the label `com.amazonaws.sagemaker.capabilities.multi-models=true`
  (or, for an image that cannot be relabelled, `multi_models = true` in its images.toml
  entry). The built-in images serve it whatever their labels. CreateModel refuses an image the
  daemon has without the label; one it does not have yet is checked when it starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import polyhost
from polyhost import framework_images
from polyhost.backends.base import ContainerStartError, ImageNotFound
from polyhost.backends.docker.daemon import first_line, where
from polyhost.backends.registry import BUILTIN_MODULES

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.images import Image

ACCEPT_BIND_TO_PORT = "com.amazonaws.sagemaker.capabilities.accept-bind-to-port"
MULTI_MODELS = "com.amazonaws.sagemaker.capabilities.multi-models"
PULL_POLICIES = ("never", "missing", "always")

# The reference grammar of distribution/reference (Docker's own).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_NAME = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REFERENCE = re.compile(rf"^{_NAME}(?::{_TAG})?(?:@{_DIGEST})?$")
MAX_REFERENCE = 255


def is_reference(image: str) -> bool:
    """True for a Docker image reference (`name[:tag][@digest]`, lower-case repository)."""
    return len(image) <= MAX_REFERENCE and REFERENCE.match(image) is not None


def candidates(image: str, version: str = polyhost.__version__) -> list[str]:
    """The local references to try for `image`: a built-in without a tag is this version's."""
    if image in BUILTIN_MODULES:
        return [f"{image}:{version}", f"{image}:latest"]
    builtin = framework_images.builtin_image(image)
    if builtin is not None:
        return [image, f"{builtin}:{version}", f"{builtin}:latest"]
    return [image]


def accepts_bind_to_port(labels: Mapping[str, str] | None) -> bool:
    return (labels or {}).get(ACCEPT_BIND_TO_PORT, "").strip().lower() == "true"


def declares_multi_models(labels: Mapping[str, str] | None) -> bool:
    return (labels or {}).get(MULTI_MODELS, "").strip().lower() == "true"


def require_multi_models(image: str, labels: Mapping[str, str] | None) -> None:
    """ContainerStartError (fit for a FailureReason) when a multi-model container's image does
    not say it serves many models."""
    if not declares_multi_models(labels):
        raise ContainerStartError(
            f"Image {image} does not serve multiple models: it lacks the label "
            f"{MULTI_MODELS}=true, which Mode MultiModel needs. Add `LABEL {MULTI_MODELS}=true` "
            "to its Dockerfile once its server implements SageMaker's multi-model API "
            "(POST /models, DELETE /models/{name}, POST /models/{name}/invoke)."
        )


def missing_label_reason(image: str) -> str:
    return (
        f"Image {image} does not accept a port: it lacks the label "
        f"{ACCEPT_BIND_TO_PORT}=true. The containers of an endpoint share one network, so each "
        "must serve on the port polyhost gives it. Add `LABEL "
        f"{ACCEPT_BIND_TO_PORT}=true` to its Dockerfile and make its server listen on the port "
        "in the SAGEMAKER_BIND_TO_PORT environment variable (8080 when unset)."
    )


def _not_present(image: str, tried: list[str], policy: str) -> ImageNotFound:
    shown = " or ".join(tried)
    builtin = image if image in BUILTIN_MODULES else framework_images.builtin_image(image)
    if builtin is not None:
        fix = (
            f"build it with `polyhost images build {builtin.split('/', 1)[1]}`"
            " (or `docker pull`/`docker tag` it there)"
        )
    else:
        fix = f"build or pull it there first (`docker pull {image}`)"
    if policy == "never":
        fix += ", or start the server with --docker-pull missing"
    return ImageNotFound(f"Image {shown} is not on the Docker daemon at {where()}; {fix}.")


def resolve(client: DockerClient, image: str, policy: str) -> tuple[str, Image]:
    """The reference to run and its image, after pulling as `policy` says.

    Raises ImageNotFound (absent, or the pull failed) with what to do about it.
    """
    import docker.errors

    tried = candidates(image)
    if policy == "always":
        try:
            _pull(client, image)
        except ImageNotFound:
            if framework_images.builtin_image(image) is None:
                raise
    for reference in tried:
        try:
            return reference, client.images.get(reference)
        except docker.errors.ImageNotFound:
            continue
    if policy == "missing":
        try:
            _pull(client, image)
        except ImageNotFound:
            if framework_images.builtin_image(image) is None:
                raise
            raise _not_present(image, tried, policy) from None
        try:
            return image, client.images.get(image)
        except docker.errors.ImageNotFound:
            pass
    raise _not_present(image, tried, policy)


def _pull(client: DockerClient, image: str) -> None:
    """Pull `image` (the SDK reads its tag or digest; no tag means latest)."""
    import docker.errors

    try:
        client.images.pull(image)
    except docker.errors.APIError as error:
        raise ImageNotFound(
            f"Image {image} could not be pulled by the Docker daemon at {where()}: "
            f"{first_line(error)}. Check the name and the daemon's registry access, or put the "
            "image there yourself (docker pull / docker load)."
        ) from None


def require_bind_to_port(image: str, labels: Mapping[str, str] | None) -> None:
    """ContainerStartError (fit for a FailureReason) when the image does not take a port."""
    if not accepts_bind_to_port(labels):
        raise ContainerStartError(missing_label_reason(image))
