"""The build context of the stack images: a reproducible wheel, requirements, pins, CA bundle.

(`polyhost images build` itself runs in the Docker tests' set-up, which builds polyhost/sklearn
with it.)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from polyhost.backends.docker.build_context import (
    Checkout,
    ContextError,
    assemble,
    build_wheel,
    extra_names,
    wheel_requirements,
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(Checkout.find(), tmp_path_factory.mktemp("wheel"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_wheel_is_the_same_bytes_when_the_code_is(wheel: Path, tmp_path: Path) -> None:
    again = build_wheel(Checkout.find(), tmp_path)
    assert digest(again) == digest(wheel)  # so Docker's cache skips the install layer


def test_requirements_hold_polyhosts_and_the_stacks(wheel: Path) -> None:
    names = {r.name.lower() for r in wheel_requirements(wheel, "sklearn")}
    assert {"uvicorn", "psutil", "scikit-learn", "joblib"} <= names
    assert "torch" not in names
    assert extra_names(wheel, "sklearn") == {"scikit-learn", "joblib", "numpy"}


def test_the_context_pins_the_frameworks_installed_here(wheel: Path, tmp_path: Path) -> None:
    import sklearn

    folder = assemble(Checkout.find(), "sklearn", tmp_path / "ctx", wheel)
    assert {p.name for p in folder.iterdir()} == {
        "Dockerfile",
        "entrypoint.sh",
        "wheels",
        "requirements.txt",
        "constraints.txt",
        "build-ca.crt",
    }
    assert f"scikit-learn=={sklearn.__version__}" in (folder / "constraints.txt").read_text()
    dockerfile = (folder / "Dockerfile").read_text()
    assert "accept-bind-to-port=true" in dockerfile
    assert "ARG BASE_IMAGE=python:3.11-slim" in dockerfile


def test_an_unknown_checkout_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="no polyhost checkout found"):
        Checkout.find(tmp_path)


def test_the_command_names_the_stacks_when_one_is_unknown(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from polyhost.cli import main

    assert main(["images", "build", "cobol"]) == 1
    error = capsys.readouterr().err
    assert "unknown stack cobol" in error and "sklearn, pytorch, tensorflow" in error
