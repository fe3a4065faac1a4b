"""`python -m polyhost.stacks.pytorch`: serve SM_MODEL_DIR on SAGEMAKER_BIND_TO_PORT."""

from __future__ import annotations

import os

from polyhost.stacks.pytorch.handlers import DEFAULTS
from polyhost.stacks.toolkit.framework import announce
from polyhost.stacks.toolkit.handlers import HandlerService
from polyhost.stacks.toolkit.server import serve


def default_threads() -> int:
    """Intra-op threads when the container does not set OMP_NUM_THREADS itself.

    torch's own default is one thread per core. An endpoint runs several containers side by
    side, so every container taking all cores oversubscribes the machine: on 2 shared cores a
    one-image MNIST request measured 18-79 ms that way against 7-9 ms with one thread. Half
    the cores (at least one) leaves room for the neighbours; POLYHOST_TORCH_THREADS overrides.
    """
    configured = os.environ.get("POLYHOST_TORCH_THREADS")
    if configured and configured.isdigit() and int(configured) > 0:
        return int(configured)
    return max(1, (os.cpu_count() or 1) // 2)


def main() -> None:
    announce("PyTorch", ["torch"])
    if "OMP_NUM_THREADS" not in os.environ:
        # torch reads these when it is imported, which happens later, in the model load.
        threads = str(default_threads())
        os.environ["OMP_NUM_THREADS"] = threads
        os.environ.setdefault("MKL_NUM_THREADS", threads)
    serve(HandlerService(DEFAULTS, server_name="polyhost/pytorch"))


if __name__ == "__main__":
    main()
