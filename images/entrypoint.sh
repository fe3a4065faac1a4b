#!/bin/sh
# The image's entrypoint. SageMaker starts a serving container as `docker run IMAGE serve`;
# `serve` runs this image's stack on SAGEMAKER_BIND_TO_PORT (8080 when unset). Any other
# command runs as given, so `docker run -it IMAGE sh` still works for a look inside.
set -eu
if [ "$#" -eq 0 ] || [ "$1" = "serve" ]; then
    exec python -m "$POLYHOST_STACK"
fi
exec "$@"
