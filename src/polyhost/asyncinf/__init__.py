"""InvokeEndpointAsync: the durable queue of requests and the worker that runs them."""
