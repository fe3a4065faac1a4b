"""SageMaker's framework image URIs, and which built-in stack serves each (docs/images.md).

Code written for SageMaker names its container by the image the SageMaker Python SDK returns,
`763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-inference:2.3.1-cpu`. Such a URI is
recognised by its repository name alone: any 12-digit account, any region, and the ECR domain
of any AWS partition. The SDK's own configuration lists some 60 accounts across 40 regions and
adds new ones with every release; a list copied from it would go stale, while the repository
names have not changed since the images were first published. A user's own repository of the
same name in ECR is taken for SageMaker's too; name it otherwise (or register it in
images.toml, which wins) to run it as it is.

Kept at the bottom of the layers: the control plane (CreateModel's refusals) and the image
registry (which stack runs) must agree on every URI, and neither may import the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Repository -> the built-in image that serves it. The first five are what the SDK returns
# today for inference; the rest are the names it returns for the oldest framework versions.
FAMILIES: dict[str, str] = {
    "tensorflow-inference": "polyhost/tensorflow",
    "pytorch-inference": "polyhost/pytorch",
    "sagemaker-scikit-learn": "polyhost/sklearn",
    "sagemaker-xgboost": "polyhost/xgboost",
    "huggingface-pytorch-inference": "polyhost/huggingface",
    # ARM (Graviton) builds of the same CPU containers.
    "tensorflow-inference-graviton": "polyhost/tensorflow",
    "pytorch-inference-graviton": "polyhost/pytorch",
    # TensorFlow 1.11-1.12 (Serving) and before 1.11, PyTorch before 1.2, XGBoost's first
    # built-in algorithm ("xgboost:1").
    "sagemaker-tensorflow-serving": "polyhost/tensorflow",
    "sagemaker-tensorflow": "polyhost/tensorflow",
    "sagemaker-pytorch": "polyhost/pytorch",
    "xgboost": "polyhost/xgboost",
}
# The repositories listed in messages: the ones users meet today.
CURRENT_FAMILIES = (
    "huggingface-pytorch-inference",
    "pytorch-inference",
    "sagemaker-scikit-learn",
    "sagemaker-xgboost",
    "tensorflow-inference",
)
# Repositories of accelerated containers: no CPU stack can stand in for them.
ACCELERATED: dict[str, str] = {
    "tensorflow-inference-eia": "Elastic Inference",
    "pytorch-inference-eia": "Elastic Inference",
    "sagemaker-tensorflow-eia": "Elastic Inference",
    "sagemaker-tensorflow-serving-eia": "Elastic Inference",
    "huggingface-pytorch-inference-neuron": "AWS Neuron (Inferentia)",
    "huggingface-pytorch-inference-neuronx": "AWS Neuron (Inferentia2/Trainium)",
    "pytorch-inference-neuron": "AWS Neuron (Inferentia)",
    "pytorch-inference-neuronx": "AWS Neuron (Inferentia2/Trainium)",
    "tensorflow-inference-neuron": "AWS Neuron (Inferentia)",
    "tensorflow-inference-neuronx": "AWS Neuron (Inferentia2/Trainium)",
}
UNSERVED: dict[str, str] = {
    "huggingface-tensorflow-inference": (
        "polyhost serves Hugging Face models with PyTorch only; use huggingface-pytorch-inference "
        "(a PyTorch or safetensors checkpoint of the model)"
    ),
}

# The ECR domains of the partitions the SDK knows: aws, aws-cn, aws-us-gov (amazonaws.com
# too), aws-iso, aws-iso-b, aws-iso-f.
_DOMAINS = r"amazonaws\.com|amazonaws\.com\.cn|c2s\.ic\.gov|sc2s\.sgov\.gov|csp\.hci\.ic\.gov"
_URI = re.compile(
    rf"^(?P<account>[0-9]{{12}})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z]{{2}}(?:-[a-z0-9]+)+)"
    rf"\.(?:{_DOMAINS})/(?P<repository>[a-z0-9][a-z0-9._/-]*?)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@[A-Za-z][A-Za-z0-9]*:[0-9a-fA-F]{32,})?$"
)
# Tag words that ask for an accelerator: `-gpu-`, CUDA (`cu117`), Neuron (`neuronx`,
# `inf`/`inf2`/`trn`), Elastic Inference.
_GPU_WORD = re.compile(r"^(?:gpu|cu\d+)$")
_NEURON_WORD = re.compile(r"^(?:neuron\w*|inf\d*|trn\d*)$")


@dataclass(frozen=True)
class FrameworkImage:
    """A parsed SageMaker framework image URI."""

    uri: str
    account: str
    region: str
    repository: str
    tag: str  # "" when the URI has none

    @property
    def builtin(self) -> str | None:
        """The built-in image serving it, or None when no CPU stack can (see `refusal`)."""
        if self.accelerator() is not None:
            return None
        return FAMILIES.get(self.repository)

    def accelerator(self) -> str | None:
        """What hardware the image is built for, when not a CPU: GPU, Neuron, Elastic Inference."""
        if self.repository in ACCELERATED:
            return ACCELERATED[self.repository]
        words = re.split(r"[-_]", self.tag.lower())
        if any(_GPU_WORD.match(word) for word in words):
            return "GPU (CUDA)"
        if any(_NEURON_WORD.match(word) for word in words):
            return "AWS Neuron"
        if "eia" in words:
            return "Elastic Inference"
        return None

    def cpu_alternative(self) -> str | None:
        """What to write instead, when one CPU image is the same container without the
        accelerator: the tag's `gpu` as `cpu` without the CUDA word (`2.3.1-gpu-py37-cu110` ->
        `2.3.1-cpu-py37`), or an Elastic Inference repository without its `-eia`."""
        registry = self.uri.split("/", 1)[0]
        if self.repository.endswith("-eia") and self.repository[: -len("-eia")] in FAMILIES:
            return f"{registry}/{self.repository[: -len('-eia')]}:{self.tag or 'latest'}"
        words = self.tag.split("-")
        if self.repository not in FAMILIES or "gpu" not in words:
            return None
        cpu = ["cpu" if word == "gpu" else word for word in words if not re.match(r"^cu\d+$", word)]
        return f"{registry}/{self.repository}:{'-'.join(cpu)}"


def parse(image: str) -> FrameworkImage | None:
    """The URI's parts when `image` names a repository of SageMaker's framework families (served,
    accelerated or refused); None for every other image."""
    match = _URI.match(image)
    if match is None:
        return None
    repository = match.group("repository")
    if repository not in FAMILIES and repository not in ACCELERATED and repository not in UNSERVED:
        return None
    return FrameworkImage(
        uri=image.split("@", 1)[0],
        account=match.group("account"),
        region=match.group("region"),
        repository=repository,
        tag=match.group("tag") or "",
    )


def builtin_image(image: str) -> str | None:
    """The built-in image (`polyhost/tensorflow`, ...) serving a framework URI; None for any
    other image and for a URI no CPU stack can serve."""
    parsed = parse(image)
    return parsed.builtin if parsed is not None else None


def refusal(image: str) -> str | None:
    """Why a framework URI cannot run here (one sentence fit for a ValidationException), or None
    when it can or is no framework URI at all."""
    parsed = parse(image)
    if parsed is None:
        return None
    if parsed.repository in UNSERVED:
        return f"{parsed.repository} cannot run here: {UNSERVED[parsed.repository]}"
    accelerator = parsed.accelerator()
    if accelerator is None:
        return None
    message = (
        f"{parsed.repository}:{parsed.tag or 'latest'} is built for {accelerator}, and polyhost "
        "runs CPU stacks only"
    )
    alternative = parsed.cpu_alternative()
    if alternative is not None:
        message += f"; use the CPU image {alternative}"
    else:
        base = re.sub(r"-(?:neuronx?|eia)$", "", parsed.repository)
        message += f"; use a CPU tag of {base} (e.g. {_EXAMPLE_TAGS.get(base, 'VERSION-cpu')})"
    return message


_EXAMPLE_TAGS = {
    "tensorflow-inference": "2.3.1-cpu",
    "pytorch-inference": "1.8.1-cpu-py36",
    "huggingface-pytorch-inference": "2.1.0-transformers4.37.0-cpu-py310-ubuntu22.04",
}


def families_text() -> str:
    """How a message names the framework URIs this server runs."""
    return (
        "or a SageMaker framework image (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPOSITORY:TAG, "
        f"REPOSITORY one of {', '.join(CURRENT_FAMILIES)})"
    )
