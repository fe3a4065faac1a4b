"""`python -m polyhost.stacks.sklearn`: serve SM_MODEL_DIR on SAGEMAKER_BIND_TO_PORT."""

from __future__ import annotations

from polyhost.stacks.sklearn.handlers import DEFAULTS
from polyhost.stacks.toolkit.framework import announce
from polyhost.stacks.toolkit.handlers import HandlerService
from polyhost.stacks.toolkit.server import serve


def main() -> None:
    announce("scikit-learn", ["scikit-learn"])
    serve(HandlerService(DEFAULTS, server_name="polyhost/sklearn"))


if __name__ == "__main__":
    main()
