"""CreateModel with `Mode: MultiModel`: what SageMaker refuses, in one answer, with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from polyhost.backends.registry import ImageRegistry
from polyhost.control.rules import RuleContext, model_rules
from polyhost.control.specs import model_containers
from polyhost.modeldata.local_policy import LocalModelPolicy

PREFIX = "s3://bucket/models/"


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> RuleContext:
    config = tmp_path_factory.mktemp("images") / "images.toml"
    config.write_text(
        '[images."acme/single:1"]\ncommand = ["true"]\n\n'
        '[images."acme/mms:1"]\ncommand = ["true"]\nmulti_models = true\n'
    )
    return RuleContext(ImageRegistry.load(config), LocalModelPolicy())


def container(**extra: Any) -> dict[str, Any]:
    return {"Image": "polyhost/sklearn", "Mode": "MultiModel", "ModelDataUrl": PREFIX, **extra}


@pytest.mark.parametrize(
    "definition",
    [
        container(),
        container(MultiModelConfig={"ModelCacheSetting": "Disabled"}),
        container(Image="acme/mms:1"),
        container(ModelDataUrl="https://models.example.com/all/"),
        {"Image": "polyhost/sklearn", "Mode": "SingleModel", "ModelDataUrl": "s3://b/m.tar.gz"},
    ],
)
def test_accepted(context: RuleContext, definition: dict[str, Any]) -> None:
    assert model_rules({"PrimaryContainer": definition}, context) == []


@pytest.mark.parametrize(
    ("definition", "words"),
    [
        (container(ModelDataSource={"S3DataSource": {}}), "ModelDataSource is not supported"),
        (container(Image="acme/single:1"), "image that serves multiple models"),
        ({"Image": "polyhost/sklearn", "Mode": "MultiModel"}, "needs the prefix"),
        (container(ModelDataUrl="https://h.example.com/m"), "must end with '/'"),
        (
            {"Image": "polyhost/sklearn", "MultiModelConfig": {"ModelCacheSetting": "Enabled"}},
            "applies only to a container with Mode MultiModel",
        ),
    ],
)
def test_refused(context: RuleContext, definition: dict[str, Any], words: str) -> None:
    found = model_rules({"PrimaryContainer": definition}, context)
    assert len(found) == 1 and words in found[0], found


@pytest.mark.parametrize(
    "image",
    [
        "polyhost/tensorflow",
        "polyhost/pytorch:2.3",
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.13-cpu",
    ],
)
def test_every_builtin_stack_is_multi_model(context: RuleContext, image: str) -> None:
    assert model_rules({"PrimaryContainer": container(Image=image)}, context) == []


def test_pipeline_with_two_multi_model_containers(context: RuleContext) -> None:
    params: dict[str, Any] = {
        "Containers": [container(), container(), {"Image": "polyhost/sklearn"}]
    }
    found = model_rules(params, context)
    assert found == [
        "An inference pipeline (Serial mode) may have at most one container with Mode "
        "MultiModel; containers.1, containers.2 have it"
    ]
    direct = {**params, "InferenceExecutionConfig": {"Mode": "Direct"}}
    for index, item in enumerate(direct["Containers"]):
        item["ContainerHostname"] = f"c{index}"
    assert model_rules(direct, context) == []


def test_spec_carries_mode_and_cache() -> None:
    _, (spec,) = model_containers(
        "m", {"PrimaryContainer": container(MultiModelConfig={"ModelCacheSetting": "Disabled"})}
    )
    assert spec.multi_model and not spec.model_cache and spec.model_data_url == PREFIX
    _, (single,) = model_containers("m", {"PrimaryContainer": {"Image": "polyhost/sklearn"}})
    assert not single.multi_model and single.model_cache


def test_registry_capability(tmp_path: Path) -> None:
    config = tmp_path / "images.toml"
    config.write_text('[images."x/y"]\ncommand = ["true"]\nmulti_models = "yes"\n')
    with pytest.raises(Exception, match="multi_models must be true or false"):
        ImageRegistry.load(config)
    registry = ImageRegistry.load(None)
    assert registry.serves_multiple_models("polyhost/sklearn:1.2")
    assert registry.serves_multiple_models("polyhost/tensorflow")
    assert not registry.serves_multiple_models("nobody/knows")
