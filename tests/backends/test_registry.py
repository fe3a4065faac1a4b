"""The image registry: built-ins, tags, SageMaker's framework image URIs, user images from
images.toml, and config errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

import polyhost
from polyhost.backends.base import ImageNotFound, ResourceLimits
from polyhost.backends.docker import images as docker_images
from polyhost.backends.registry import SAGEMAKER_IMAGE_FLAG, ImageConfigError, ImageRegistry

BUILTINS = [
    "polyhost/huggingface",
    "polyhost/pytorch",
    "polyhost/sklearn",
    "polyhost/tensorflow",
    "polyhost/xgboost",
]
DLC = "763104351884.dkr.ecr.us-east-1.amazonaws.com"


def load(tmp_path: Path, text: str) -> ImageRegistry:
    path = tmp_path / "images.toml"
    path.write_text(text, encoding="utf-8")
    return ImageRegistry.load(path)


def test_builtins_run_their_stack_module_with_this_python() -> None:
    registry = ImageRegistry.load(None)
    assert registry.known_images() == BUILTINS
    entry = registry.resolve("polyhost/sklearn")
    assert entry is not None and entry.builtin
    assert entry.command == (sys.executable, "-m", "polyhost.stacks.sklearn")


@pytest.mark.parametrize(
    ("image", "known"),
    [
        ("polyhost/pytorch:2.1", True),
        ("polyhost/tensorflow:latest", True),
        ("polyhost/sklearn@sha256:0123abcd", True),
        ("polyhost/sklearn:1.0/extra", False),
        ("polyhost/sklearn:", False),
        ("polyhost/keras", False),
        ("acme/echo:1", False),
    ],
)
def test_builtins_match_with_a_tag_or_digest(image: str, known: bool) -> None:
    assert ImageRegistry.load(None).knows_image(image) is known


def test_user_images_and_python_overrides(tmp_path: Path) -> None:
    registry = load(
        tmp_path,
        """
[images."acme/echo:1"]
command = ["python3", "/srv/echo_server.py", "--quiet"]
python = "/opt/venvs/echo/bin/python"

[images."acme/native"]
command = ["/usr/local/bin/serve", "--port-from-env"]
python = "/opt/venvs/unused/bin/python"

[images."polyhost/tensorflow"]
python = "/opt/venvs/tf/bin/python"
""",
    )
    assert registry.known_images() == sorted([*BUILTINS, "acme/echo:1", "acme/native"])
    echo = registry.resolve("acme/echo:1")
    assert echo is not None and not echo.builtin
    assert echo.command == ("/opt/venvs/echo/bin/python", "/srv/echo_server.py", "--quiet")
    native = registry.resolve("acme/native")
    assert native is not None
    assert native.command == ("/usr/local/bin/serve", "--port-from-env")  # not a python program
    tensorflow = registry.resolve("polyhost/tensorflow:2.16")
    assert tensorflow is not None
    assert tensorflow.command == ("/opt/venvs/tf/bin/python", "-m", "polyhost.stacks.tensorflow")
    pytorch = registry.resolve("polyhost/pytorch")
    assert pytorch is not None and pytorch.command[0] == sys.executable
    # User images match exactly: no tag magic for them.
    assert not registry.knows_image("acme/echo:2")
    assert not registry.knows_image("acme/echo")


def test_a_user_image_may_replace_a_builtin_command(tmp_path: Path) -> None:
    registry = load(tmp_path, '[images."polyhost/sklearn"]\ncommand = ["/opt/my-sklearn"]\n')
    entry = registry.resolve("polyhost/sklearn")
    assert entry is not None and entry.command == ("/opt/my-sklearn",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[images\n", "cannot read image config"),
        ("images = 3\n", "[images] must be a table"),
        ('[images]\n"acme/x" = "python3 x.py"\n', 'images."acme/x"] must be a table'),
        ('[images."acme/x"]\npython = "/bin/python"\n', "command must be a non-empty list"),
        ('[images."acme/x"]\ncommand = []\n', "command must be a non-empty list"),
        ('[images."acme/x"]\ncommand = "python3 x.py"\n', "command must be a non-empty list"),
        ('[images."acme/x"]\ncommand = ["python3", 3]\n', "command must be a non-empty list"),
        ('[images."acme/x"]\ncommand = ["x"]\npython = 3\n', "python: not a string"),
    ],
)
def test_malformed_configs_say_where(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ImageConfigError) as raised:
        load(tmp_path, text)
    assert message in str(raised.value)
    assert "images.toml" in str(raised.value)


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ImageConfigError, match="cannot read image config"):
        ImageRegistry.load(tmp_path / "nope.toml")


def test_resource_limits_per_image(tmp_path: Path) -> None:
    config = tmp_path / "images.toml"
    config.write_text(
        '[images."acme/a:1"]\ncommand = ["python3", "a.py"]\nmemory = "512MiB"\ncpus = 1.5\n'
        '[images."polyhost/sklearn"]\nmemory = "1G"\n',
        encoding="utf-8",
    )
    registry = ImageRegistry.load(config)
    assert registry.limits("acme/a:1") == ResourceLimits(memory_bytes=512 * 1024**2, cpus=1.5)
    assert registry.limits("polyhost/sklearn:2") == ResourceLimits(memory_bytes=10**9)
    assert registry.limits("polyhost/pytorch") == ResourceLimits()


@pytest.mark.parametrize(
    ("line", "message"),
    [('memory = "lots"', "not a size"), ("cpus = -1", "cpus must be a positive number")],
)
def test_bad_resource_limits(tmp_path: Path, line: str, message: str) -> None:
    config = tmp_path / "images.toml"
    config.write_text(f'[images."acme/a:1"]\ncommand = ["a"]\n{line}\n', encoding="utf-8")
    with pytest.raises(ImageConfigError, match=message):
        ImageRegistry.load(config)


@pytest.mark.parametrize(
    ("image", "module"),
    [
        (f"{DLC}/tensorflow-inference:2.3.1-cpu", "polyhost.stacks.tensorflow"),
        (f"{DLC}/pytorch-inference:1.8.1-cpu-py36", "polyhost.stacks.pytorch"),
        (
            "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
            "polyhost.stacks.sklearn",
        ),
        (
            "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-xgboost:1.7-1",
            "polyhost.stacks.xgboost",
        ),
        (
            "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/huggingface-pytorch-inference:"
            "2.1.0-transformers4.37.0-cpu-py310-ubuntu22.04",
            "polyhost.stacks.huggingface",
        ),
        (
            f"{DLC}/pytorch-inference-graviton:2.0.0-cpu-py310-ubuntu20.04-sagemaker",
            "polyhost.stacks.pytorch",
        ),
        (
            "520713654638.dkr.ecr.us-east-1.amazonaws.com/sagemaker-tensorflow-serving:1.12.0-cpu",
            "polyhost.stacks.tensorflow",
        ),
        ("811284229777.dkr.ecr.us-east-1.amazonaws.com/xgboost:1", "polyhost.stacks.xgboost"),
        (f"{DLC}/tensorflow-inference@sha256:" + "a" * 64, "polyhost.stacks.tensorflow"),
    ],
)
def test_framework_image_uris_run_their_builtin_stack_told_the_uri(image: str, module: str) -> None:
    registry = ImageRegistry.load(None)
    assert registry.knows_image(image)
    entry = registry.resolve(image)
    assert entry is not None and entry.builtin
    assert entry.command == (sys.executable, "-m", module, SAGEMAKER_IMAGE_FLAG, image)


@pytest.mark.parametrize(
    "image",
    [
        f"{DLC}/tensorflow-inference:2.3.1-gpu",
        f"{DLC}/huggingface-pytorch-inference:2.1.0-transformers4.37.0-gpu-py310-cu118-ubuntu20.04",
        f"{DLC}/pytorch-inference-neuronx:1.13.1-neuronx-py310-sdk2.18.0-ubuntu20.04",
        f"{DLC}/tensorflow-inference-eia:2.3.0-cpu",
        f"{DLC}/huggingface-tensorflow-inference:2.11.1-transformers4.26.0-cpu-py39-ubuntu20.04",
        f"{DLC}/djl-inference:0.29.0-cpu-full",  # a repository polyhost has no stack for
        "763104351884.dkr.ecr.us-east-1.example.com/tensorflow-inference:2.3.1-cpu",
        "76310435188.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.3.1-cpu",
        "tensorflow-inference:2.3.1-cpu",
    ],
)
def test_accelerated_unserved_and_lookalike_uris_are_not_known(image: str) -> None:
    registry = ImageRegistry.load(None)
    assert registry.resolve(image) is None
    assert not registry.knows_image(image)


def test_images_toml_settings_of_a_builtin_reach_its_framework_uris(tmp_path: Path) -> None:
    image = f"{DLC}/pytorch-inference:1.8.1-cpu-py36"
    registry = load(
        tmp_path, '[images."polyhost/pytorch"]\npython = "/opt/torch/bin/python"\ncpus = 2\n'
    )
    entry = registry.resolve(image)
    assert entry is not None
    assert entry.command[:3] == ("/opt/torch/bin/python", "-m", "polyhost.stacks.pytorch")
    assert registry.limits(image) == ResourceLimits(cpus=2.0)
    # A built-in replaced by the user's own command runs that command, with no extra argument.
    replaced = load(tmp_path, '[images."polyhost/pytorch"]\ncommand = ["/opt/my-torch"]\n')
    assert replaced.resolve(image) == replaced.resolve("polyhost/pytorch")
    # The exact URI in images.toml wins over the built-in.
    exact = load(tmp_path, f'[images."{image}"]\ncommand = ["/opt/dlc-lookalike"]\n')
    mine = exact.resolve(image)
    assert mine is not None and mine.command == ("/opt/dlc-lookalike",)


# The Docker backend's side of the same rule (backends/docker/images.py; no daemon needed).


def test_docker_runs_a_framework_uri_as_it_is_else_its_builtin_image() -> None:
    image = f"{DLC}/tensorflow-inference:2.3.1-cpu"
    version = polyhost.__version__
    assert docker_images.candidates(image) == [
        image,
        f"polyhost/tensorflow:{version}",
        "polyhost/tensorflow:latest",
    ]
    assert docker_images.candidates(f"{DLC}/tensorflow-inference:2.3.1-gpu") == [
        f"{DLC}/tensorflow-inference:2.3.1-gpu"
    ]


class _Images:
    """The part of docker-py's `client.images` that `resolve` uses: `have` are present, pulls
    fail (no ECR login here)."""

    def __init__(self, have: set[str]) -> None:
        self.have = have
        self.pulled: list[str] = []

    def get(self, reference: str) -> Any:
        import docker.errors

        if reference not in self.have:
            raise docker.errors.ImageNotFound(reference)
        return reference

    def pull(self, reference: str) -> None:
        import docker.errors

        self.pulled.append(reference)
        raise docker.errors.APIError(f"pull access denied for {reference}")


class _Client:
    def __init__(self, have: set[str]) -> None:
        self.images = _Images(have)


@pytest.mark.parametrize("policy", ["never", "missing", "always"])
def test_docker_falls_back_to_the_builtin_image_whatever_the_pull_policy(policy: str) -> None:
    pytest.importorskip("docker")
    image = f"{DLC}/pytorch-inference:1.8.1-cpu-py36"
    client = _Client({"polyhost/pytorch:latest"})
    assert docker_images.resolve(client, image, policy)[0] == "polyhost/pytorch:latest"  # type: ignore[arg-type]
    pulled = _Client({image, "polyhost/pytorch:latest"})
    assert docker_images.resolve(pulled, image, policy)[0] == image  # type: ignore[arg-type]
    with pytest.raises(ImageNotFound, match="polyhost images build pytorch"):
        docker_images.resolve(_Client(set()), image, policy)  # type: ignore[arg-type]
