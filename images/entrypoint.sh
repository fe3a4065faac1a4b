#!/bin/sh
# The image's entrypoint. SageMaker starts a serving container as `docker run IMAGE serve`;
# `serve` runs this image's stack on SAGEMAKER_BIND_TO_PORT (8080 when unset). Any other
# command runs as given, so `docker run -it IMAGE sh` still works for a look inside. Arguments
# after `serve` go to the stack (polyhost passes `--sagemaker-image URI` when this image stands
# in for a SageMaker framework image, so the stack can say which version serves it).
set -eu
if [ "$#" -eq 0 ]; then
    exec python -m "$POLYHOST_STACK"
fi
if [ "$1" = "serve" ]; then
    shift
    exec python -m "$POLYHOST_STACK" "$@"
fi
exec "$@"
