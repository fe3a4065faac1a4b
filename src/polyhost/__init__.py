"""polyhost: self-hosted multi-container inference endpoints that speak SageMaker's wire."""

__version__ = "0.1.0"
