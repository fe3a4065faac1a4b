"""The control plane: SageMaker resources, their validation, and the SQLite store."""
