"""Helpers shared by the control-plane tests: unique names, resources, raw calls, checks."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.model import Shape, StructureShape

from tests.support.server import ECHO_IMAGE, REGION, PolyhostProcess

SERVICE_MODEL = botocore.session.get_session().get_service_model("sagemaker")


def unique(prefix: str = "t") -> str:
    """A resource name no other test (or earlier run on the same server) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def loose_client(server: PolyhostProcess) -> Any:
    """A boto3 client that sends what it is given: botocore's own checks are switched off, so
    the server's validation is what answers."""
    return boto3.client(
        "sagemaker",
        endpoint_url=server.url,
        region_name=REGION,
        config=Config(retries={"max_attempts": 1}, parameter_validation=False),
    )


def make_model(sagemaker: Any, name: str | None = None, **extra: Any) -> str:
    name = name or unique("model")
    params: dict[str, Any] = {"ModelName": name}
    if "PrimaryContainer" not in extra and "Containers" not in extra:
        params["PrimaryContainer"] = {"Image": ECHO_IMAGE}
    params.update(extra)
    sagemaker.create_model(**params)
    return name


def make_config(sagemaker: Any, model: str, name: str | None = None, **variant: Any) -> str:
    name = name or unique("config")
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": model, "InitialInstanceCount": 1, **variant}
        ],
    )
    return name


def make_endpoint(sagemaker: Any, name: str | None = None) -> tuple[str, str, str]:
    """(endpoint, config, model), all new, with the light echo image."""
    model = make_model(sagemaker)
    config = make_config(sagemaker, model)
    name = name or unique("ep")
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
    return name, config, model


def raw_call(
    server: PolyhostProcess,
    operation: str | None,
    body: bytes | dict[str, Any],
    connection: http.client.HTTPConnection | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST / with X-Amz-Target, as any HTTP client could; returns (status, decoded JSON)."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if operation is not None:
        headers["X-Amz-Target"] = f"SageMaker.{operation}"
    conn = connection or http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("POST", "/", body=payload, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
        return answer.status, json.loads(data) if data else {}
    finally:
        if connection is None:
            conn.close()


def missing_required(shape: Shape, value: Any, path: str = "") -> Iterator[str]:
    """Paths where `value` lacks a member the output `shape` requires (recursively)."""
    if isinstance(shape, StructureShape) and isinstance(value, dict):
        for member in shape.required_members:
            if member not in value:
                yield f"{path}.{member}".lstrip(".")
        for member, item in value.items():
            if member in shape.members:
                yield from missing_required(shape.members[member], item, f"{path}.{member}")
    elif shape.type_name == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            yield from missing_required(shape.member, item, f"{path}[{index}]")  # type: ignore[attr-defined]


def assert_output_shape(operation: str, answer: dict[str, Any]) -> None:
    """Every member the output shape requires is there, and nothing outside the shape."""
    shape = SERVICE_MODEL.operation_model(operation).output_shape
    assert shape is not None
    assert list(missing_required(shape, answer)) == []
    assert set(answer) <= set(shape.members), set(answer) - set(shape.members)
