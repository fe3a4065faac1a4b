"""Image references, the built-in images' tags and the bind-to-port label (no daemon needed)."""

from __future__ import annotations

import pytest

import polyhost
from polyhost.backends.base import ContainerStartError
from polyhost.backends.docker import images as docker_images


@pytest.mark.parametrize(
    "image",
    [
        "polyhost/sklearn",
        "polyhost/sklearn:0.1.0",
        "busybox",
        "localhost:5000/team/model:v1.2",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/my-model:latest",
        "acme/x@sha256:" + "a" * 64,
        "acme/x:1@sha256:" + "b" * 64,
    ],
)
def test_references_docker_accepts(image: str) -> None:
    assert docker_images.is_reference(image)


@pytest.mark.parametrize(
    "image", ["Acme/X", "acme/x:", "acme//x", "acme/x:tag:again", "-acme/x", "a" * 256, ""]
)
def test_malformed_references(image: str) -> None:
    assert not docker_images.is_reference(image)


def test_a_builtin_without_a_tag_is_this_version_then_latest() -> None:
    version = polyhost.__version__
    assert docker_images.candidates("polyhost/sklearn") == [
        f"polyhost/sklearn:{version}",
        "polyhost/sklearn:latest",
    ]
    assert docker_images.candidates("polyhost/sklearn:1") == ["polyhost/sklearn:1"]
    assert docker_images.candidates("acme/x") == ["acme/x"]


def test_the_bind_to_port_label_is_required_with_the_fix_in_the_message() -> None:
    docker_images.require_bind_to_port("x", {docker_images.ACCEPT_BIND_TO_PORT: "true"})
    docker_images.require_bind_to_port("x", {docker_images.ACCEPT_BIND_TO_PORT: " True "})
    for labels in (None, {}, {docker_images.ACCEPT_BIND_TO_PORT: "false"}):
        with pytest.raises(ContainerStartError) as raised:
            docker_images.require_bind_to_port("acme/x:1", labels)
        message = str(raised.value)
        assert message.startswith("Image acme/x:1 does not accept a port")
        assert "SAGEMAKER_BIND_TO_PORT" in message
        assert len(message) < 600  # leaves room in a FailureReason (1024) for the rest


def test_the_docker_backend_opens_the_registry_to_any_reference() -> None:
    from polyhost.backends.registry import ImageRegistry

    registry = ImageRegistry.load(None)
    assert not registry.knows_image("acme/x:1")
    registry.admit(docker_images.is_reference)
    assert registry.knows_image("acme/x:1") and registry.knows_image("polyhost/sklearn")
    assert not registry.knows_image("Acme/X")
