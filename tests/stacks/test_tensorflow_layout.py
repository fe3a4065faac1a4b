"""Which SavedModels a model directory holds, in the layouts SageMaker's container accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from polyhost.stacks.tensorflow.layout import LayoutError, default_model_name, discover


def saved_model(folder: Path, *, text: bool = False) -> None:
    (folder / "variables").mkdir(parents=True)
    (folder / ("saved_model.pbtxt" if text else "saved_model.pb")).write_bytes(b"")


def summary(model_dir: Path) -> dict[str, list[int]]:
    return {source.name: sorted(source.versions) for source in discover(model_dir)}


def test_versions_at_the_root_are_model_named_model(tmp_path: Path) -> None:
    saved_model(tmp_path / "1")
    saved_model(tmp_path / "00000002")
    (tmp_path / "3").mkdir()  # no SavedModel in it: not a version
    (tmp_path / "code").mkdir()
    sources = discover(tmp_path)
    assert summary(tmp_path) == {"model": [1, 2]}
    assert sources[0].latest == 2
    assert sources[0].versions[2] == (tmp_path / "00000002").resolve()


def test_named_models_and_deeper_exports(tmp_path: Path) -> None:
    saved_model(tmp_path / "mnist" / "1")
    saved_model(tmp_path / "model" / "00000001", text=True)
    saved_model(tmp_path / "export" / "Servo" / "1565")
    sources = discover(tmp_path)
    assert [source.name for source in sources] == ["Servo", "mnist", "model"]
    assert summary(tmp_path) == {"Servo": [1565], "mnist": [1], "model": [1]}


def test_unversioned_saved_models_are_version_one(tmp_path: Path) -> None:
    saved_model(tmp_path)
    assert summary(tmp_path) == {"model": [1]}
    other = tmp_path / "other"
    saved_model(other / "classifier")
    assert summary(other) == {"classifier": [1]}


def test_errors_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="does not exist"):
        discover(tmp_path / "missing")
    (tmp_path / "model.h5").write_bytes(b"")
    with pytest.raises(LayoutError, match=r"no SavedModel found .*<version>/saved_model.pb"):
        discover(tmp_path)
    saved_model(tmp_path / "a" / "1")
    saved_model(tmp_path / "a" / "001")
    with pytest.raises(LayoutError, match="version 1 twice"):
        discover(tmp_path)
    twins = tmp_path / "twins"
    saved_model(twins / "x" / "m" / "1")
    saved_model(twins / "y" / "m" / "1")
    with pytest.raises(LayoutError, match="two models are named 'm'"):
        discover(twins)


def test_default_model(tmp_path: Path) -> None:
    saved_model(tmp_path / "b" / "1")
    saved_model(tmp_path / "a" / "1")
    sources = discover(tmp_path)
    assert default_model_name(sources, None) == "a"
    assert default_model_name(sources, "b") == "b"
    with pytest.raises(LayoutError, match=r"SAGEMAKER_TFS_DEFAULT_MODEL_NAME='c'.*a, b"):
        default_model_name(sources, "c")
