"""SageMaker's shapes: botocore's `sagemaker` model, read by `polyhost.awsmodel`.

Only the operations polyhost serves are kept, and the reduced model is cached in the state
directory, so a start need not parse the whole file (~2.6 MB of JSON) at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from polyhost.awsmodel.shapes import Operation, Schema, Shape, project
from polyhost.awsmodel.shapes import load_schema as load_service_schema

SERVICE = "sagemaker"

__all__ = ["SERVICE", "Operation", "Schema", "Shape", "load_schema", "project"]


def load_schema(
    operations: Iterable[str], path: Path | None = None, cache_dir: Path | None = None
) -> Schema:
    """The SageMaker shapes reachable from `operations` (inputs and outputs)."""
    return load_service_schema(SERVICE, operations, path=path, cache_dir=cache_dir)
