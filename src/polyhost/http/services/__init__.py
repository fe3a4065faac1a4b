"""The service adapters: SageMaker's runtime, CloudWatch, CloudWatch Logs and the container logs
route, each translating its wire form into a call on a core object that knows nothing of HTTP."""
