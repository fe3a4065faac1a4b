"""The cross-field rules of docs/contract.md "Names and limits", one row each, with the message."""

from __future__ import annotations

import re
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.control.helpers import make_config, make_model, raw_call, unique
from tests.support.errors import client_error
from tests.support.server import ACCOUNT, ECHO_IMAGE, REGION, PolyhostProcess

E = ECHO_IMAGE
SKLEARN = "polyhost/sklearn"
DLC = "763104351884.dkr.ecr.us-east-1.amazonaws.com"  # SageMaker's framework images
DLC_CN = "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn"
GPU_TORCH = "pytorch-inference:2.1.0-gpu-py310-cu118-ubuntu20.04-sagemaker"


def one(text: str) -> str:
    return f"1 validation error detected: {text}"


def variant(**extra: Any) -> dict[str, Any]:
    return {"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 1, **extra}


def env(prefix: str, count: int, size: int) -> dict[str, str]:
    return {f"{prefix}{i}": "x" * size for i in range(count)}


MODEL_CASES: list[tuple[str, dict[str, Any], str | re.Pattern[str]]] = [
    (
        "PrimaryContainer xor Containers: both",
        {"PrimaryContainer": {"Image": E}, "Containers": [{"Image": E}, {"Image": E}]},
        one(
            "PrimaryContainer and Containers are mutually exclusive: give PrimaryContainer for a "
            "single container or Containers for several, not both"
        ),
    ),
    (
        "PrimaryContainer xor Containers: neither",
        {},
        one("Either PrimaryContainer or a non-empty Containers list is required"),
    ),
    (
        "PrimaryContainer xor Containers: empty Containers",
        {"Containers": []},
        one("Either PrimaryContainer or a non-empty Containers list is required"),
    ),
    (
        "Direct mode needs Containers",
        {"PrimaryContainer": {"Image": E}, "InferenceExecutionConfig": {"Mode": "Direct"}},
        one(
            "Value 'Direct' at 'inferenceExecutionConfig.mode' failed to satisfy constraint: "
            "Direct mode needs Containers; a model with only a PrimaryContainer has one container"
        ),
    ),
    (
        "Direct mode needs every hostname",
        {
            "Containers": [{"Image": E, "ContainerHostname": "a"}, {"Image": E}, {"Image": E}],
            "InferenceExecutionConfig": {"Mode": "Direct"},
        },
        "2 validation errors detected: "
        + "; ".join(
            f"Value null at 'containers.{i}.member.containerHostname' failed to satisfy "
            "constraint: Member must not be null: in Direct mode every container needs a "
            "ContainerHostname, which callers pass as TargetContainerHostname"
            for i in (2, 3)
        ),
    ),
    (
        "Direct mode needs unique hostnames",
        {
            "Containers": [
                {"Image": E, "ContainerHostname": "web"},
                {"Image": E, "ContainerHostname": "db"},
                {"Image": E, "ContainerHostname": "WEB"},
            ],
            "InferenceExecutionConfig": {"Mode": "Direct"},
        },
        one(
            "ContainerHostname 'web' is given to more than one container (containers.1, "
            "containers.3); hostnames must be unique within a model"
        ),
    ),
    (
        "Serial pipeline of one",
        {"Containers": [{"Image": E}]},
        one(
            "A Serial inference pipeline needs 2 to 15 containers; Containers has 1. Give a "
            "single container as PrimaryContainer, or set InferenceExecutionConfig Mode to Direct"
        ),
    ),
    (
        "Serial pipeline of sixteen",
        {"Containers": [{"Image": E}] * 16},
        re.compile(
            re.escape("1 validation error detected: Value '[{Image=polyhost-test/echo:1}, ")
            + ".*"
            + re.escape(
                "' at 'containers' failed to satisfy constraint: Member must have length less "
                "than or equal to 15"
            )
        ),
    ),
    (
        "Serial hostnames: all or none",
        {
            "Containers": [{"Image": E}, {"Image": E, "ContainerHostname": "second"}],
            "InferenceExecutionConfig": {"Mode": "Serial"},
        },
        one(
            "Value null at 'containers.1.member.containerHostname' failed to satisfy constraint: "
            "Member must not be null: in a Serial inference pipeline either every container has "
            "a ContainerHostname or none has (then they are assigned from the position)"
        ),
    ),
    (
        "Serial hostnames unique",
        {"Containers": [{"Image": E, "ContainerHostname": "x"}] * 2},
        one(
            "ContainerHostname 'x' is given to more than one container (containers.1, "
            "containers.2); hostnames must be unique within a model"
        ),
    ),
    (
        "Environment: at most 100 entries",
        {"PrimaryContainer": {"Image": E, "Environment": env("K", 101, 1)}},
        re.compile(
            re.escape("1 validation error detected: Value '{K0=x, K1=x, ")
            + ".*"
            + re.escape(
                "' at 'primaryContainer.environment' failed to satisfy constraint: Member must "
                "have length less than or equal to 100"
            )
        ),
    ),
    (
        "Environment: 32 KB for all containers together",
        {
            "Containers": [
                {"Image": E, "Environment": env("A", 17, 1000)},
                {"Image": E, "Environment": env("B", 17, 1000)},
            ]
        },
        one(
            "The Environment maps of a model may hold at most 32768 bytes of keys and values "
            "together (all containers combined); these hold 34082 bytes"
        ),
    ),
    (
        "Environment: no NUL in a value",
        {"PrimaryContainer": {"Image": E, "Environment": {"K": "a\x00b"}}},
        one(
            "Value '{K=a\x00b}' at 'primaryContainer.environment' failed to satisfy constraint: "
            "Map value must not contain the NUL character"
        ),
    ),
    (
        "ModelDataUrl: no NUL",
        {"PrimaryContainer": {"Image": E, "ModelDataUrl": "file:///srv/a\x00b.tar.gz"}},
        one(
            "Value 'file:///srv/a\x00b.tar.gz' at 'primaryContainer.modelDataUrl' failed to "
            "satisfy constraint: Member must not contain NUL or other control characters (raw, "
            "or percent-encoded in a file:// URL): it names a file or an object"
        ),
    ),
    (
        "ModelDataUrl: no percent-encoded NUL in a file:// URL",
        {"Containers": [{"Image": E}, {"Image": E, "ModelDataUrl": "file:///srv/a%00b"}]},
        one(
            "Value 'file:///srv/a%00b' at 'containers.2.member.modelDataUrl' failed to satisfy "
            "constraint: Member must not contain NUL or other control characters (raw, or "
            "percent-encoded in a file:// URL): it names a file or an object"
        ),
    ),
    (
        "ModelDataUrl: no control character in an object key",
        {"PrimaryContainer": {"Image": E, "ModelDataUrl": "s3://bucket/model\x1b.tar.gz"}},
        one(
            "Value 's3://bucket/model\x1b.tar.gz' at 'primaryContainer.modelDataUrl' failed to "
            "satisfy constraint: Member must not contain NUL or other control characters (raw, "
            "or percent-encoded in a file:// URL): it names a file or an object"
        ),
    ),
    (
        "image must be known",
        {"Containers": [{"Image": E}, {"Image": "acme/unknown:2"}]},
        re.compile(
            re.escape(
                "1 validation error detected: Value 'acme/unknown:2' at 'containers.2.member.image'"
                " failed to satisfy constraint: Member must name an image this server knows: ["
            )
            # the test images (echo and any other), then the built-in stacks
            + ".*polyhost-test/echo:1, (polyhost-test/[^,]+, )*"
            + "polyhost/huggingface, polyhost/pytorch, polyhost/sklearn, polyhost/tensorflow, "
            + "polyhost/xgboost"
            + re.escape(
                "] or a SageMaker framework image (ACCOUNT.dkr.ecr.REGION.amazonaws.com/"
                "REPOSITORY:TAG, REPOSITORY one of huggingface-pytorch-inference, "
                "pytorch-inference, sagemaker-scikit-learn, sagemaker-xgboost, "
                "tensorflow-inference); register other images in the file given to "
                "`polyhost serve --image-config`"
            )
        ),
    ),
    (
        "an unknown repository of SageMaker's account is an unknown image",
        {"PrimaryContainer": {"Image": f"{DLC}/djl-inference:0.29.0-cpu-full"}},
        re.compile(
            re.escape(f"1 validation error detected: Value '{DLC}/djl-inference:0.29.0-cpu-full'")
            + ".*Member must name an image this server knows: .*"
        ),
    ),
    (
        "a GPU framework image is refused: CPU stacks only",
        {"PrimaryContainer": {"Image": f"{DLC}/tensorflow-inference:2.3.1-gpu"}},
        one(
            f"Value '{DLC}/tensorflow-inference:2.3.1-gpu' at 'primaryContainer.image' failed "
            "to satisfy constraint: Member must name a CPU image: tensorflow-inference:2.3.1-gpu "
            "is built for GPU (CUDA), and polyhost runs CPU stacks only; use the CPU image "
            f"{DLC}/tensorflow-inference:2.3.1-cpu"
        ),
    ),
    (
        "a CUDA tag is a GPU image, in any container",
        {
            "Containers": [
                {"Image": E},
                {"Image": f"{DLC_CN}/{GPU_TORCH}"},
            ]
        },
        one(
            f"Value '{DLC_CN}/pytorch-inference:2.1.0-gpu-py310-cu118-ubuntu20.04-sagemaker' at "
            "'containers.2.member.image' failed to satisfy constraint: Member must name a CPU "
            "image: pytorch-inference:2.1.0-gpu-py310-cu118-ubuntu20.04-sagemaker is built for "
            "GPU (CUDA), and polyhost runs CPU stacks only; use the CPU image "
            f"{DLC_CN}/pytorch-inference:2.1.0-cpu-py310-ubuntu20.04-sagemaker"
        ),
    ),
    (
        "a Neuron image is refused",
        {
            "PrimaryContainer": {
                "Image": f"{DLC}/huggingface-pytorch-inference-neuronx:2.1.2-transformers4.43.2"
                "-neuronx-py310-sdk2.20.0-ubuntu20.04"
            }
        },
        re.compile(
            ".*Member must name a CPU image: huggingface-pytorch-inference-neuronx:.* is built "
            r"for AWS Neuron \(Inferentia2/Trainium\), and polyhost runs CPU stacks only; use a "
            "CPU tag of huggingface-pytorch-inference .*"
        ),
    ),
    (
        "an Elastic Inference image is refused",
        {"PrimaryContainer": {"Image": f"{DLC}/tensorflow-inference-eia:2.3.0-cpu"}},
        re.compile(
            ".*Member must name a CPU image: tensorflow-inference-eia:2.3.0-cpu is built for "
            "Elastic Inference, and polyhost runs CPU stacks only; use the CPU image "
            + re.escape(f"{DLC}/tensorflow-inference:2.3.0-cpu")
        ),
    ),
    (
        "Hugging Face on TensorFlow is refused",
        {
            "PrimaryContainer": {
                "Image": f"{DLC}/huggingface-tensorflow-inference:2.11.1-transformers4.26.0-cpu"
                "-py39-ubuntu20.04"
            }
        },
        re.compile(
            ".*Member must name a CPU image: huggingface-tensorflow-inference cannot run here: "
            "polyhost serves Hugging Face models with PyTorch only; use "
            r"huggingface-pytorch-inference \(a PyTorch or safetensors checkpoint of the model\)"
        ),
    ),
    (
        "image is needed",
        {"Containers": [{"Image": E}, {"Environment": {}}]},
        one(
            "Value null at 'containers.2.member.image' failed to satisfy constraint: Member must "
            "not be null"
        ),
    ),
    (
        "tags: at most 50",
        {
            "PrimaryContainer": {"Image": E},
            "Tags": [{"Key": f"k{i}", "Value": "v"} for i in range(51)],
        },
        re.compile(
            ".*' at 'tags' failed to satisfy constraint: Member must have length less than or "
            "equal to 50"
        ),
    ),
    (
        "tags: aws: is reserved",
        {"PrimaryContainer": {"Image": E}, "Tags": [{"Key": "aws:owner", "Value": "me"}]},
        one(
            "Value 'aws:owner' at 'tags.1.member.key' failed to satisfy constraint: Member must "
            "not start with 'aws:', which AWS reserves"
        ),
    ),
    (
        "tags: a key once per request",
        {
            "PrimaryContainer": {"Image": E},
            "Tags": [
                {"Key": "k", "Value": "1"},
                {"Key": "K", "Value": "2"},
                {"Key": "k", "Value": ""},
            ],
        },
        one("Tag key 'k' is given more than once (tags.1, tags.3); keys must be unique"),
    ),
    (
        "shape and cross-field violations together",
        {"ModelName": "bad_name", "Containers": [{"Image": E}], "PrimaryContainer": {"Image": E}},
        "2 validation errors detected: Value 'bad_name' at 'modelName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: "
        "[a-zA-Z0-9]([\\-a-zA-Z0-9]*[a-zA-Z0-9])?; PrimaryContainer and Containers are "
        "mutually exclusive: give PrimaryContainer for a single container or Containers for "
        "several, not both",
    ),
]


def _check(body: dict[str, Any], expected: str | re.Pattern[str]) -> None:
    assert body["__type"] == "ValidationException", body
    if isinstance(expected, str):
        assert body["message"] == expected
    else:
        assert expected.fullmatch(body["message"]), body["message"]


@pytest.mark.parametrize(
    ("params", "expected"), [c[1:] for c in MODEL_CASES], ids=[c[0] for c in MODEL_CASES]
)
def test_model_rule(
    server: PolyhostProcess, params: dict[str, Any], expected: str | re.Pattern[str]
) -> None:
    status, body = raw_call(server, "CreateModel", {"ModelName": unique("rule"), **params})
    assert status == 400
    _check(body, expected)


CONFIG_CASES: list[tuple[str, dict[str, Any], str | re.Pattern[str]]] = [
    (
        "variant names unique, ignoring case",
        {"ProductionVariants": [variant(VariantName="blue"), variant(VariantName="Blue")]},
        one(
            "VariantName 'blue' is used by more than one production variant "
            "(productionVariants.1, productionVariants.2); variant names must be unique within "
            "an endpoint configuration"
        ),
    ),
    (
        "variant needs a model when another names one",
        {
            "ProductionVariants": [
                variant(VariantName="a"),
                {"VariantName": "v", "InitialInstanceCount": 1},
            ]
        },
        one(
            "Value null at 'productionVariants.2.member.modelName' failed to satisfy constraint: "
            "Member must not be null: a production variant serves a model, unless no variant of "
            "the configuration names one (a configuration for inference components)"
        ),
    ),
    (
        "a variant for components needs its instances' type",
        {"ProductionVariants": [{"VariantName": "v", "InitialInstanceCount": 1}]},
        one(
            "Value null at 'productionVariants.1.member.instanceType' failed to satisfy "
            "constraint: Member must not be null: a variant for inference components needs the "
            "instances components are placed on"
        ),
    ),
    (
        "managed scaling's bounds in order",
        {
            "ProductionVariants": [
                {
                    "VariantName": "v",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                    "ManagedInstanceScaling": {
                        "Status": "ENABLED",
                        "MinInstanceCount": 3,
                        "MaxInstanceCount": 2,
                    },
                }
            ]
        },
        one(
            "productionVariants.1.ManagedInstanceScaling.MinInstanceCount (3) must not be "
            "greater than MaxInstanceCount (2)"
        ),
    ),
    (
        "variant needs a name",
        {"ProductionVariants": [{"ModelName": "m"}]},
        one(
            "Value null at 'productionVariants.1.member.variantName' failed to satisfy "
            "constraint: Member must not be null"
        ),
    ),
    (
        "at most 10 variants",
        {"ProductionVariants": [variant(VariantName=f"v{i}") for i in range(11)]},
        re.compile(
            ".*' at 'productionVariants' failed to satisfy constraint: Member must have length "
            "less than or equal to 10"
        ),
    ),
    (
        "instance count at least 1",
        {"ProductionVariants": [variant(InitialInstanceCount=0)]},
        one(
            "Value '0' at 'productionVariants.1.member.initialInstanceCount' failed to satisfy "
            "constraint: Member must have value greater than or equal to 1"
        ),
    ),
    (
        "weight at least 0",
        {"ProductionVariants": [variant(InitialVariantWeight=-1)]},
        one(
            "Value '-1' at 'productionVariants.1.member.initialVariantWeight' failed to satisfy "
            "constraint: Member must have value greater than or equal to 0"
        ),
    ),
    (
        "startup health check timeout at most 3600",
        {"ProductionVariants": [variant(ContainerStartupHealthCheckTimeoutInSeconds=3601)]},
        one(
            "Value '3601' at "
            "'productionVariants.1.member.containerStartupHealthCheckTimeoutInSeconds' failed to "
            "satisfy constraint: Member must have value less than or equal to 3600"
        ),
    ),
    (
        "download timeout at least 60",
        {"ProductionVariants": [variant(ModelDataDownloadTimeoutInSeconds=30)]},
        one(
            "Value '30' at 'productionVariants.1.member.modelDataDownloadTimeoutInSeconds' failed "
            "to satisfy constraint: Member must have value greater than or equal to 60"
        ),
    ),
]


@pytest.mark.parametrize(
    ("params", "expected"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_endpoint_config_rule(
    server: PolyhostProcess, params: dict[str, Any], expected: str | re.Pattern[str]
) -> None:
    status, body = raw_call(
        server, "CreateEndpointConfig", {"EndpointConfigName": unique("rule"), **params}
    )
    assert status == 400
    _check(body, expected)


# -- what the rules accept, and what they resolve to ---------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"Containers": [{"Image": E}, {"Image": SKLEARN}]},
        {"Containers": [{"Image": E, "ContainerHostname": f"c{i}"} for i in range(15)]},
        {
            "Containers": [{"Image": E, "ContainerHostname": "only"}],
            "InferenceExecutionConfig": {"Mode": "Direct"},
        },
        {"PrimaryContainer": {"Image": E}, "InferenceExecutionConfig": {"Mode": "Serial"}},
        {"PrimaryContainer": {"Image": E}, "Containers": []},
        {"PrimaryContainer": {"Image": "polyhost/sklearn:1.0"}},
        {"PrimaryContainer": {"Image": E, "ModelDataUrl": "file:///srv/models/m.tar.gz"}},
        {"PrimaryContainer": {"Image": E, "ModelDataUrl": "file:///srv/my%20models/m.tar.gz"}},
        {"PrimaryContainer": {"Image": E, "Environment": env("K", 100, 300)}},
    ],
    ids=[
        "pipeline of two",
        "pipeline of fifteen",
        "direct of one",
        "primary with serial",
        "primary with empty containers",
        "built-in image with a tag",
        "local model data",
        "local model data, percent-encoded space",
        "100 variables within 32 KB",
    ],
)
def test_accepted_models(sagemaker: Any, params: dict[str, Any]) -> None:
    name = unique("ok")
    sagemaker.create_model(ModelName=name, **params)
    assert sagemaker.describe_model(ModelName=name)["ModelName"] == name


@pytest.mark.parametrize(
    "image",
    [
        f"{DLC}/tensorflow-inference:2.3.1-cpu",
        f"{DLC}/pytorch-inference:1.8.1-cpu-py36",
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
        "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
        f"{DLC_CN}/huggingface-pytorch-inference:2.1.0-transformers4.37.0-cpu-py310-ubuntu22.04",
        "886529160074.dkr.ecr.us-iso-east-1.c2s.ic.gov/tensorflow-inference:2.12.1-cpu",
    ],
)
def test_framework_images_are_accepted_and_shown_as_given(sagemaker: Any, image: str) -> None:
    name = unique("dlc")
    sagemaker.create_model(ModelName=name, PrimaryContainer={"Image": image})
    assert sagemaker.describe_model(ModelName=name)["PrimaryContainer"]["Image"] == image


def test_references_must_exist(sagemaker: Any) -> None:
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    model = make_model(sagemaker)
    ghost = unique("Ghost")
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint_config(
            EndpointConfigName=unique("c"),
            ProductionVariants=[
                variant(ModelName=model),
                variant(VariantName="w", ModelName=ghost),
            ],
        )
    assert client_error(excinfo) == (
        "ValidationException",
        400,
        f'Could not find model "{arn}:model/{ghost.lower()}".',
    )
    config = make_config(sagemaker, model)
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint(EndpointName=unique("e"), EndpointConfigName=config + "x")
    assert client_error(excinfo).message == (
        f'Could not find endpoint configuration "{arn}:endpoint-config/{config}x".'
    )
