"""`python -m polyhost.stacks.pytorch`: serve SM_MODEL_DIR on SAGEMAKER_BIND_TO_PORT."""

from __future__ import annotations

from polyhost.stacks.pytorch.handlers import DEFAULTS
from polyhost.stacks.toolkit.handlers import HandlerService
from polyhost.stacks.toolkit.server import serve


def main() -> None:
    serve(HandlerService(DEFAULTS, server_name="polyhost/pytorch"))


if __name__ == "__main__":
    main()
