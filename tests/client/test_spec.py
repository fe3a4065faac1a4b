"""The deployment file: what each shape of YAML becomes, and the messages for bad files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from polyhost.client.spec import (
    SpecError,
    content_hash,
    load,
    parse,
    resolve_model_data_url,
    suffixed,
)

BASE = Path("/srv/deploy")


def doc(text: str) -> Any:
    return yaml.safe_load(text)


def test_minimal_file_is_one_primary_container_and_an_alltraffic_variant() -> None:
    deployment = parse(doc("endpoint: e1\nmodel: {image: polyhost/sklearn}"), BASE)
    assert deployment.endpoint == "e1"
    assert deployment.config_name == "e1-config"
    (model,) = deployment.models
    assert model.name == "e1-model"
    assert model.params == {"PrimaryContainer": {"Image": "polyhost/sklearn"}}
    assert deployment.config_params({"e1-model": "e1-model"}) == {
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": "e1-model",
                "InitialInstanceCount": 1,
                "InitialVariantWeight": 1,
            }
        ]
    }


def test_multi_container_direct_file_maps_to_boto3_shapes() -> None:
    deployment = parse(
        doc(
            """
endpoint: mnist
endpoint_config: mnist-cfg
tags: {team: vision, replicas: 2}
model:
  name: mnist-multi
  mode: Direct
  execution_role_arn: arn:aws:iam::123456789012:role/x
  containers:
    - hostname: pytorch-mnist
      image: polyhost/pytorch
      model_data_url: file://./models/pytorch.tar.gz
      environment: {SAGEMAKER_PROGRAM: inference.py, WORKERS: 2, DEBUG: true}
    - hostname: tensorflow-mnist
      image: polyhost/tensorflow
      model_data_url: s3://bucket/tf.tar.gz
variants:
  - name: Blue
    instance_count: 2
    weight: 0.5
    instance_type: ml.m5.large
    startup_timeout: 120
    download_timeout: 600
"""
        ),
        BASE,
    )
    assert deployment.config_name == "mnist-cfg"
    assert deployment.tags == (
        {"Key": "team", "Value": "vision"},
        {"Key": "replicas", "Value": "2"},
    )
    (model,) = deployment.models
    assert model.name == "mnist-multi"
    assert model.params == {
        "Containers": [
            {
                "ContainerHostname": "pytorch-mnist",
                "Image": "polyhost/pytorch",
                "ModelDataUrl": "file:///srv/deploy/models/pytorch.tar.gz",
                "Environment": {
                    "SAGEMAKER_PROGRAM": "inference.py",
                    "WORKERS": "2",
                    "DEBUG": "true",
                },
            },
            {
                "ContainerHostname": "tensorflow-mnist",
                "Image": "polyhost/tensorflow",
                "ModelDataUrl": "s3://bucket/tf.tar.gz",
            },
        ],
        "InferenceExecutionConfig": {"Mode": "Direct"},
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/x",
    }
    (variant,) = deployment.config_params({"mnist-multi": "mnist-multi-0abc"})["ProductionVariants"]
    assert variant == {
        "VariantName": "Blue",
        "ModelName": "mnist-multi-0abc",
        "InitialInstanceCount": 2,
        "InitialVariantWeight": 0.5,
        "InstanceType": "ml.m5.large",
        "ContainerStartupHealthCheckTimeoutInSeconds": 120,
        "ModelDataDownloadTimeoutInSeconds": 600,
    }


def test_serial_pipeline_without_mode_keeps_containers_and_no_config() -> None:
    deployment = parse(
        doc("endpoint: p\nmodel:\n  containers: [{image: a}, {image: b}]"),
        BASE,
    )
    assert deployment.models[0].params == {"Containers": [{"Image": "a"}, {"Image": "b"}]}


def test_one_container_with_a_mode_stays_a_container_list() -> None:
    deployment = parse(
        doc("endpoint: p\nmodel:\n  mode: Direct\n  containers: [{hostname: h, image: a}]"),
        BASE,
    )
    assert "Containers" in deployment.models[0].params


def test_several_models_one_per_variant() -> None:
    deployment = parse(
        doc(
            """
endpoint: ab
models:
  - {name: model-a, image: echo-a}
  - {name: model-b, image: echo-b}
variants:
  - {name: A, model: model-a, weight: 3}
  - {name: B, model: model-b, weight: 1}
"""
        ),
        BASE,
    )
    assert [m.name for m in deployment.models] == ["model-a", "model-b"]
    variants = deployment.config_params({"model-a": "model-a", "model-b": "model-b-1234"})
    assert [(v["VariantName"], v["ModelName"]) for v in variants["ProductionVariants"]] == [
        ("A", "model-a"),
        ("B", "model-b-1234"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "the file: must be a mapping"),
        ("model: {image: x}", "endpoint: required"),
        ("endpoint: e", "either `model:`"),
        ("endpoint: e\nmodel: {image: x}\nmodels: [{name: m, image: x}]", "either `model:`"),
        ("endpoint: e\nmodel: {image: x}\nvariant: []", "unknown key(s) variant; known keys:"),
        ("endpoint: e\nmodel: {imagee: x}", "model: unknown key(s) imagee"),
        ("endpoint: e\nmodel: {name: m}", "model: needs `containers:` or an inline `image:`"),
        ("endpoint: e\nmodel: {image: x, containers: [{image: y}]}", "put image inside"),
        ("endpoint: e\nmodel: {containers: []}", "model.containers: must be a non-empty list"),
        ("endpoint: e\nmodel: {containers: [{hostname: h}]}", "model.containers[0].image: req"),
        ("endpoint: e\nmodel: {image: x, mode: direct}", "must be Serial or Direct"),
        ("endpoint: e\nmodel: {image: [x]}", "model.image: must be a string, not list"),
        ("endpoint: e\nmodel: {image: x, environment: [A]}", "environment: must be a mapping"),
        ("endpoint: e\nmodel: {image: x, environment: {A: [1]}}", "environment.A: must be a str"),
        ("endpoint: e\nmodel: {image: x}\nvariants: {}", "variants: must be a non-empty list"),
        ("endpoint: e\nmodel: {image: x}\nvariants: [{weight: 1}]", "variants[0].name: required"),
        (
            "endpoint: e\nmodel: {image: x}\nvariants: [{name: v, instance_count: 1.5}]",
            "variants[0].instance_count: must be a whole number",
        ),
        (
            "endpoint: e\nmodel: {image: x}\nvariants: [{name: v, weight: heavy}]",
            "variants[0].weight: must be a number",
        ),
        (
            "endpoint: e\nmodel: {image: x}\nvariants: [{name: v, model: other}]",
            "'other' is not a model of this file",
        ),
        ("endpoint: e\nmodels: [{image: x}]", "models[0].name: required"),
        ("endpoint: e\nmodels: [{name: m, image: x}, {name: m, image: y}]", "more than once"),
        (
            "endpoint: e\nmodels: [{name: m, image: x}, {name: n, image: y}]",
            "variants: required with several models",
        ),
        (
            "endpoint: e\nmodels: [{name: m, image: x}, {name: n, image: y}]\n"
            "variants: [{name: v, model: m}]",
            "model(s) n are used by no variant",
        ),
    ],
)
def test_bad_files_name_the_key_and_the_fix(text: str, message: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse(doc(text), BASE)
    assert message in str(raised.value)


def test_load_reports_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("endpoint: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load(broken)


def test_load_resolves_relative_urls_against_the_files_folder(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    path = folder / "endpoint.yaml"
    path.write_text("endpoint: e\nmodel: {image: x, model_data_url: file://models/m.tar.gz}\n")
    container = load(path).models[0].params["PrimaryContainer"]
    assert container["ModelDataUrl"] == (folder / "models/m.tar.gz").as_uri()


@pytest.mark.parametrize(
    ("url", "resolved"),
    [
        ("file://./m.tar.gz", "file:///srv/deploy/m.tar.gz"),
        ("file://../m.tar.gz", "file:///srv/m.tar.gz"),
        ("file:///abs/m.tar.gz", "file:///abs/m.tar.gz"),
        ("models/m.tar.gz", "file:///srv/deploy/models/m.tar.gz"),
        ("/abs/m.tar.gz", "file:///abs/m.tar.gz"),
        ("s3://bucket/key.tar.gz", "s3://bucket/key.tar.gz"),
        ("https://host/m.tar.gz", "https://host/m.tar.gz"),
    ],
)
def test_model_data_url_resolution(url: str, resolved: str) -> None:
    assert resolve_model_data_url(url, BASE) == resolved


def test_hash_names_are_stable_and_fit_63_characters() -> None:
    digest = content_hash({"b": 1, "a": [1, 2]})
    assert digest == content_hash({"a": [1, 2], "b": 1})
    assert digest != content_hash({"a": [2, 1], "b": 1})
    assert suffixed("mnist-model", digest) == f"mnist-model-{digest}"
    long = suffixed("m" * 60 + "-xyz", digest)
    assert len(long) == 63 and long.endswith(f"-{digest}")
    assert "--" not in suffixed("a" * 53 + "-b", digest)


def test_the_example_file_parses() -> None:
    example = Path(__file__).parents[2] / "examples" / "echo" / "endpoint.yaml"
    deployment = load(example)
    assert deployment.endpoint == "echo-direct"
    assert [c["ContainerHostname"] for c in deployment.models[0].params["Containers"]] == [
        "left",
        "right",
    ]


def test_a_components_file_gives_variants_without_models_and_the_components(
    tmp_path: Path,
) -> None:
    deployment = parse(
        {
            "endpoint": "shared",
            "models": [{"name": "m", "image": "polyhost/sklearn"}],
            "variants": [
                {
                    "name": "AllTraffic",
                    "instance_type": "ml.m5.xlarge",
                    "instance_count": 2,
                    "managed_scaling": {"min": 1, "max": 4},
                }
            ],
            "components": [
                {"name": "a", "model": "m", "copies": 2, "cpus": 1, "memory_mb": 512},
                {"name": "b", "image": "polyhost/sklearn", "model_data_url": "models/b.tar.gz"},
            ],
        },
        base_dir=tmp_path,
    )
    (variant,) = deployment.config_params({"m": "m"})["ProductionVariants"]
    assert "ModelName" not in variant and "InitialVariantWeight" not in variant
    assert variant["ManagedInstanceScaling"] == {
        "Status": "ENABLED",
        "MinInstanceCount": 1,
        "MaxInstanceCount": 4,
    }
    first, second = deployment.components
    assert deployment.component_specification(first, {"m": "m-1234"}) == {
        "ModelName": "m-1234",
        "ComputeResourceRequirements": {
            "MinMemoryRequiredInMb": 512,
            "NumberOfCpuCoresRequired": 1,
        },
    }
    assert first.copies == 2 and first.variant == "AllTraffic"
    url = (tmp_path / "models" / "b.tar.gz").resolve().as_uri()
    assert second.specification["Container"] == {"Image": "polyhost/sklearn", "ArtifactUrl": url}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"endpoint": "e", "components": [{"name": "a", "image": "x"}]},
            "variants: required with components",
        ),
        (
            {
                "endpoint": "e",
                "variants": [{"name": "v", "instance_type": "ml.m5.large", "model": "m"}],
                "components": [{"name": "a", "image": "x"}],
            },
            "a variant for components names no model",
        ),
        (
            {
                "endpoint": "e",
                "variants": [{"name": "v", "instance_type": "ml.m5.large"}],
                "components": [{"name": "a", "model": "nope"}],
            },
            "'nope' is not a model of this file (it has none)",
        ),
        (
            {
                "endpoint": "e",
                "variants": [{"name": "v", "instance_type": "ml.m5.large"}],
                "components": [{"name": "a", "copies": 1}],
            },
            "needs `model:` (a model of this file) or an inline `image:`",
        ),
    ],
)
def test_a_components_file_names_what_is_wrong(
    document: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        parse(document, base_dir=tmp_path)
