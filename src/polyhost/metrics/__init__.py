"""Per-container metrics: invocations, errors, latencies, CPU and memory, for Prometheus."""
