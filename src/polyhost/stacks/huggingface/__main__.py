"""`python -m polyhost.stacks.huggingface`: serve SM_MODEL_DIR on SAGEMAKER_BIND_TO_PORT."""

from __future__ import annotations

import os

from polyhost.stacks.huggingface.handlers import DEFAULTS
from polyhost.stacks.toolkit.framework import announce
from polyhost.stacks.toolkit.handlers import HandlerService
from polyhost.stacks.toolkit.server import serve


def offline_environment() -> None:
    """Before transformers is imported: no model hub (none is reachable, and a model must not
    change under a running endpoint), and PyTorch only (transformers would otherwise import
    TensorFlow too, when it is installed, which costs seconds and memory)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("USE_TF", "0")
    os.environ.setdefault("USE_TORCH", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if "OMP_NUM_THREADS" not in os.environ:  # as the PyTorch stack: half the cores
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // 2))


def main() -> None:
    offline_environment()
    announce("transformers", ["transformers"], marker="transformers")
    serve(HandlerService(DEFAULTS, server_name="polyhost/huggingface"))


if __name__ == "__main__":
    main()
