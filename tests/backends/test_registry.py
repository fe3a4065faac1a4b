"""The image registry: built-ins, tags, user images from images.toml, and config errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from polyhost.backends.base import ResourceLimits
from polyhost.backends.registry import ImageConfigError, ImageRegistry

BUILTINS = ["polyhost/pytorch", "polyhost/sklearn", "polyhost/tensorflow"]


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
