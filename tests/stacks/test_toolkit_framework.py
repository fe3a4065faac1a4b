"""The one log line saying which framework version serves a SageMaker framework image."""

from __future__ import annotations

import importlib.metadata

import pytest

from polyhost.stacks.toolkit import framework

DLC = "763104351884.dkr.ecr.us-east-1.amazonaws.com"


@pytest.mark.parametrize(
    ("image", "marker", "version"),
    [
        (f"{DLC}/tensorflow-inference:2.3.1-cpu", None, "2.3.1"),
        (f"{DLC}/pytorch-inference:1.8.1-cpu-py36", None, "1.8.1"),
        (f"{DLC}/sagemaker-scikit-learn:1.2-1-cpu-py3", None, "1.2"),
        (f"{DLC}/sagemaker-xgboost:1.7-1", None, "1.7"),
        (
            f"{DLC}/huggingface-pytorch-inference:2.1.0-transformers4.37.0-cpu",
            "transformers",
            "4.37.0",
        ),
        (f"{DLC}/tensorflow-inference:latest", None, None),
        (f"{DLC}/tensorflow-inference", None, None),
        (f"{DLC}/tensorflow-inference@sha256:" + "a" * 64, None, None),
    ],
)
def test_the_version_a_tag_names(image: str, marker: str | None, version: str | None) -> None:
    assert framework.tag_version(image, marker) == version


def test_the_image_argument() -> None:
    assert framework.requested_image(["--sagemaker-image", "x:1"]) == "x:1"
    assert framework.requested_image(["--sagemaker-image=x:2"]) == "x:2"
    assert framework.requested_image([]) is None
    assert framework.requested_image(["--sagemaker-image"]) is None


@pytest.mark.parametrize(
    ("asked", "served", "same"),
    [
        ("2.3.1", "2.3.1", True),
        ("1.2", "1.2.2", True),
        ("2.13", "2.13.0+cpu", True),
        ("1.8.1", "2.13.0+cpu", False),
        ("1.2", "1.20.1", False),
        ("2.3.1", "2.3", False),
    ],
)
def test_same_release(asked: str, served: str, same: bool) -> None:
    assert framework.same_release(asked, served) is same


def test_one_line_says_which_version_serves_the_image(capsys: pytest.CaptureFixture[str]) -> None:
    numpy = importlib.metadata.version("numpy")
    image = f"{DLC}/numpy-inference:0.1-cpu"
    framework.announce(
        "NumPy", ["not-installed-at-all", "numpy"], argv=["--sagemaker-image", image]
    )
    assert capsys.readouterr().err == (
        f"polyhost stack: image {image} names NumPy 0.1; NumPy {numpy} serves it\n"
    )
    same = f"{DLC}/numpy-inference:{numpy}-cpu"
    framework.announce("NumPy", ["numpy"], argv=["--sagemaker-image", same])
    framework.announce("NumPy", ["numpy"], argv=[])
    framework.announce("NumPy", ["not-installed-at-all"], argv=["--sagemaker-image", image])
    assert capsys.readouterr().err == ""
