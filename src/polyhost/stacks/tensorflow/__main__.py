"""`python -m polyhost.stacks.tensorflow`: the `polyhost/tensorflow` image's entry point."""

from __future__ import annotations

import sys

from polyhost.stacks.tensorflow.config import ConfigError, StackConfig, quiet_tensorflow_logs
from polyhost.stacks.toolkit.framework import announce


def main() -> None:
    quiet_tensorflow_logs()  # before anything can import TensorFlow
    announce("TensorFlow", ["tensorflow", "tensorflow-cpu", "tensorflow-intel"])
    try:
        config = StackConfig.from_environ()
    except ConfigError as error:
        print(f"polyhost/tensorflow: {error}", file=sys.stderr, flush=True)
        sys.exit(2)

    from polyhost.stacks.tensorflow.service import TensorFlowService
    from polyhost.stacks.toolkit.server import serve

    serve(TensorFlowService(config))


if __name__ == "__main__":
    main()
