"""`python -m polyhost.stacks.xgboost`: serve SM_MODEL_DIR on SAGEMAKER_BIND_TO_PORT."""

from __future__ import annotations

import os

from polyhost.stacks.toolkit.framework import announce
from polyhost.stacks.toolkit.handlers import HandlerService
from polyhost.stacks.toolkit.server import serve
from polyhost.stacks.xgboost.handlers import DEFAULT_ACCEPT, DEFAULTS


def main() -> None:
    announce("XGBoost", ["xgboost", "xgboost-cpu"])
    # A missing or */* Accept means CSV here, as in SageMaker's XGBoost container.
    environ = {"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": DEFAULT_ACCEPT, **os.environ}
    serve(HandlerService(DEFAULTS, server_name="polyhost/xgboost", environ=environ))


if __name__ == "__main__":
    main()
