"""SageMaker's framework image URIs: which stack serves each, and what is refused and why.

The last test asks the SageMaker Python SDK itself (in its own venv) for every inference image
URI it can return for TensorFlow, PyTorch, scikit-learn, XGBoost and Hugging Face, and for every
account and region of its configuration, and checks each against the rule.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polyhost import framework_images

DLC = "763104351884.dkr.ecr.us-east-1.amazonaws.com"
ROOT = Path(__file__).resolve().parents[1]
SDK_PYTHON = os.environ.get("POLYHOST_SDK_PYTHON") or str(ROOT / ".venv-sdk" / "bin" / "python")


@pytest.mark.parametrize(
    ("image", "builtin"),
    [
        (f"{DLC}/tensorflow-inference:2.3.1-cpu", "polyhost/tensorflow"),
        (f"{DLC}/pytorch-inference:1.8.1-cpu-py36", "polyhost/pytorch"),
        (f"{DLC}/tensorflow-inference", "polyhost/tensorflow"),  # no tag: latest
        (
            "123456789012.dkr.ecr.eu-west-3.amazonaws.com/sagemaker-xgboost:3.0-5",
            "polyhost/xgboost",
        ),
        (
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1",
            "polyhost/sklearn",
        ),
        (
            "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov/pytorch-inference:2.1.0-cpu-py310",
            "polyhost/pytorch",
        ),
        # "inf" or "trn" inside a word is no Neuron tag; "transformers" is no "trn".
        (
            f"{DLC}/huggingface-pytorch-inference:2.1.0-transformers4.37.0-cpu-py310-ubuntu22.04",
            "polyhost/huggingface",
        ),
    ],
)
def test_served_uris(image: str, builtin: str) -> None:
    assert framework_images.builtin_image(image) == builtin
    assert framework_images.refusal(image) is None


@pytest.mark.parametrize(
    ("image", "reason"),
    [
        (f"{DLC}/pytorch-inference:1.8.1-gpu-py36", "GPU (CUDA)"),
        (f"{DLC}/pytorch-inference:2.3.0-cu121-py311", "GPU (CUDA)"),
        (f"{DLC}/pytorch-inference:2.1.2-neuronx-py310", "AWS Neuron"),
        (f"{DLC}/tensorflow-inference:1.15.0-inf-py37", "AWS Neuron"),
        (f"{DLC}/pytorch-inference-eia:1.5.1-cpu-py3", "Elastic Inference"),
        (f"{DLC}/sagemaker-tensorflow-serving-eia:1.14-cpu", "Elastic Inference"),
        (f"{DLC}/tensorflow-inference:2.3.0-eia", "Elastic Inference"),
    ],
)
def test_accelerated_uris_are_refused_as_cpu_only(image: str, reason: str) -> None:
    assert framework_images.builtin_image(image) is None
    message = framework_images.refusal(image)
    assert message is not None
    assert f"is built for {reason}" in message
    assert "polyhost runs CPU stacks only" in message


def test_the_refusal_names_the_cpu_image_to_use() -> None:
    message = framework_images.refusal(f"{DLC}/pytorch-inference:1.8.1-gpu-py36-cu111-ubuntu18.04")
    assert message is not None
    assert message.endswith(f"use the CPU image {DLC}/pytorch-inference:1.8.1-cpu-py36-ubuntu18.04")
    message = framework_images.refusal(f"{DLC}/tensorflow-inference-eia:2.3.0-cpu")
    assert message is not None
    assert message.endswith(f"use the CPU image {DLC}/tensorflow-inference:2.3.0-cpu")


@pytest.mark.parametrize(
    "image",
    [
        "polyhost/tensorflow",
        "tensorflow-inference:2.3.1-cpu",  # no registry
        f"{DLC}/djl-inference:0.29.0-cpu-full",  # a repository without a stack here
        f"{DLC}/my-team/tensorflow-inference:2.3.1-cpu",
        "1234.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.3.1-cpu",
        "763104351884.dkr.ecr.us-east-1.amazonaws.com.evil.example/tensorflow-inference:2",
        "registry.example.com/tensorflow-inference:2.3.1-cpu",
    ],
)
def test_other_images_are_not_framework_images(image: str) -> None:
    assert framework_images.parse(image) is None
    assert framework_images.builtin_image(image) is None
    assert framework_images.refusal(image) is None


def test_huggingface_on_tensorflow_is_refused_clearly() -> None:
    message = framework_images.refusal(
        f"{DLC}/huggingface-tensorflow-inference:2.11.1-transformers4.26.0-cpu-py39-ubuntu20.04"
    )
    assert message is not None
    assert "PyTorch only" in message and "huggingface-pytorch-inference" in message


# What the SDK emits: every inference version, processor and Python version of each framework in
# one region of each partition, and one URI for each (account, region) of its configuration.
SDK_SCRIPT = r"""
import copy, functools, itertools, json, logging, os, sys, warnings
logging.disable(logging.CRITICAL)
warnings.filterwarnings("ignore")
os.environ["SAGEMAKER_SUPPRESS_V2_WARNING"] = "1"
from sagemaker import image_uris, utils
config_for = functools.lru_cache(maxsize=None)(image_uris.config_for_framework)
image_uris.config_for_framework = lambda framework: copy.deepcopy(config_for(framework))
utils._botocore_resolver = functools.lru_cache(maxsize=None)(utils._botocore_resolver)
TYPES = {"cpu": "ml.c5.xlarge", "gpu": "ml.p3.2xlarge", "inf": "ml.inf1.xlarge"}
REGIONS = ("us-east-1", "cn-north-1", "us-gov-west-1", "us-iso-east-1", "us-isob-east-1")
uris, registries = set(), set()
def walk(node):
    if isinstance(node, dict):
        if isinstance(node.get("registries"), dict) and "repository" in node:
            for region, account in node["registries"].items():
                registries.add((account, region, node["repository"]))
        for value in node.values():
            walk(value)
for framework in ("tensorflow", "pytorch", "sklearn", "xgboost", "huggingface"):
    config = config_for(framework)
    for scope in [s for s in config if s.startswith("inference") or s == "eia"]:
        walk(config[scope])
        for version, vc in config[scope].get("versions", {}).items():
            processors = config[scope].get("processors") or vc.get("processors") or ["cpu", "gpu"]
            pys = vc.get("py_versions") or [None]
            bases = [None]
            if framework == "huggingface":
                bases = [k for k in vc if k.startswith(("pytorch", "tensorflow"))] or [None]
                pys = sorted({p for b in bases if b for p in vc[b].get("py_versions", [])})
                pys = pys or [None]
            for region, processor, py, base in itertools.product(REGIONS, processors, pys, bases):
                kwargs = dict(framework=framework, region=region, version=version, py_version=py,
                              instance_type=TYPES.get(processor, "ml.c5.xlarge"),
                              image_scope="inference")
                if scope == "inference_graviton":
                    kwargs["instance_type"] = "ml.c7g.xlarge"
                if scope == "eia":
                    kwargs["accelerator_type"] = "ml.eia2.medium"
                if base:
                    kwargs["base_framework_version"] = base
                try:
                    uris.add(image_uris.retrieve(**kwargs))
                except Exception:
                    pass  # a combination this version does not have
for account, region, repository in registries:
    endpoint = utils._botocore_resolver().construct_endpoint("ecr", region)
    hostname = endpoint["hostname"] if endpoint else f"ecr.{region}.amazonaws.com"
    uris.add(image_uris.ECR_URI_TEMPLATE.format(
        registry=account, hostname=hostname, repository=f"{repository}:1.0-cpu"))
json.dump(sorted(uris), sys.stdout)
"""


@pytest.mark.sdk
def test_every_uri_the_sdk_emits_is_served_or_refused_clearly(tmp_path: Path) -> None:
    if not Path(SDK_PYTHON).exists():
        pytest.skip("the SDK's venv is made by `make .venv-sdk/.installed`")
    script = tmp_path / "sdk_uris.py"
    script.write_text(SDK_SCRIPT, encoding="utf-8")
    done = subprocess.run(
        [SDK_PYTHON, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    uris: list[str] = json.loads(done.stdout)
    assert len(uris) > 1000, len(uris)
    served: dict[str, int] = {}
    for uri in uris:
        parsed = framework_images.parse(uri)
        assert parsed is not None, uri
        refused = framework_images.refusal(uri)
        builtin = parsed.builtin
        assert (builtin is None) == (refused is not None), uri
        words = parsed.tag.split("-")
        if "gpu" in words or parsed.repository.endswith("-eia"):
            assert refused is not None, uri
        if builtin is not None:
            served[builtin] = served.get(builtin, 0) + 1
    assert sorted(served) == [
        "polyhost/huggingface",
        "polyhost/pytorch",
        "polyhost/sklearn",
        "polyhost/tensorflow",
        "polyhost/xgboost",
    ]
    print(json.dumps(served), file=sys.stderr)
