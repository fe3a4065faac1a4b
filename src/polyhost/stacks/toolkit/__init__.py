"""The small toolkit the built-in stacks share: the contract server, codecs, handler loading.

Modules:
  server       `/ping` + `/invocations` (ModelService, InvocationRequest/Response, serve)
  handlers     SageMaker's inference-toolkit handler contract as a ModelService
  user_module  finding and importing the user script; calling handlers with or without context
  context      the `context` object handlers may take
  codecs       application/json, text/csv, application/x-npy, application/x-npz,
               application/octet-stream <-> numpy
  environment  the environment variables below, with their defaults

Environment a stack reads (everything else in the container's Environment is ignored):
  SAGEMAKER_BIND_TO_PORT               port to serve on (8080)
  POLYHOST_BIND_HOST                   address to bind (0.0.0.0; the process backend: 127.0.0.1)
  SM_MODEL_DIR                         the extracted model archive (/opt/ml/model)
  SAGEMAKER_PROGRAM                    user script name (inference.py)
  SAGEMAKER_SUBMIT_DIRECTORY           where the script is: folder, .tar.gz, file:// or s3://
  AWS_ENDPOINT_URL_S3                  S3 endpoint for an s3:// submit directory
  SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT what a missing or */* Accept means (application/json)
  POLYHOST_INSTALL_REQUIREMENTS        1: pip-install code/requirements.txt at start (off)
  POLYHOST_INFERENCE_THREADS           predictions run at once (1)
  POLYHOST_INLINE_INVOCATIONS          false: never run a short prediction on the event loop
                                       (true; see server)
  POLYHOST_STACK_LOG_LEVEL             log level of the stack (INFO)
"""
