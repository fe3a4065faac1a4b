"""The `context` a user handler may take as its last argument, shaped like SageMaker's.

SageMaker's inference toolkit hands handlers the model server's context object. Scripts written
for it read `context.system_properties` (model_dir, gpu_id, ...), the request headers through
`context.get_request_header(0, name)` / `context.request_processor[0].get_request_properties()`,
and may set response headers. Offering the same names lets such scripts run here unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class Headers(dict[str, str]):
    """Header names matched in any case: scripts ask for "Accept", "accept" or "Content-Type"."""

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        super().__init__((key.lower(), value) for key, value in (headers or {}).items())

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return super().get(key.lower(), default)


class RequestProcessor:
    """One request's headers and the response headers/status a handler may set on it."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = Headers(headers)
        self.response_headers: dict[str, str] = {}
        self.status: int | None = None
        self.reason: str | None = None

    def get_request_property(self, key: str) -> str | None:
        value: str | None = self._headers.get(key)
        return value

    def get_request_properties(self) -> Headers:
        return Headers(self._headers)

    def add_response_property(self, key: str, value: str) -> None:
        self.response_headers[key.lower()] = value

    def get_response_headers(self) -> dict[str, str]:
        return dict(self.response_headers)

    def report_status(self, code: int, reason: str | None = None) -> None:
        self.status = code
        self.reason = reason


class Context:
    """Per-request context; one request per call (batch size 1, as SageMaker's default)."""

    def __init__(
        self,
        model_dir: str,
        headers: Mapping[str, str] | None = None,
        *,
        model_name: str = "model",
        server_name: str = "polyhost",
        server_version: str = "0.1.0",
        gpu_id: int | None = None,
    ) -> None:
        self.model_name = model_name
        self.manifest: dict[str, Any] = {"model": {"modelName": model_name}}
        self.system_properties: dict[str, Any] = {
            "model_dir": model_dir,
            "gpu_id": gpu_id,
            "batch_size": 1,
            "server_name": server_name,
            "server_version": server_version,
            "limit_max_image_pixels": True,
        }
        self.request_processor = [RequestProcessor(headers or {})]
        self.metrics: Any = None

    @property
    def request_ids(self) -> dict[int, str]:
        request_id = self.request_processor[0].get_request_property("x-amzn-sagemaker-inference-id")
        return {0: request_id or ""}

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.request_processor[idx].get_request_property(key)

    def get_all_request_header(self, idx: int) -> Headers:
        return self.request_processor[idx].get_request_properties()

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.set_response_header(idx, "content-type", value)

    def get_response_content_type(self, idx: int) -> str | None:
        return self.get_response_headers(idx).get("content-type")

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.request_processor[idx].add_response_property(key, value)

    def get_response_headers(self, idx: int) -> dict[str, str]:
        return self.request_processor[idx].get_response_headers()

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.request_processor[idx].report_status(code, phrase)


def parse_custom_attributes(value: str | None) -> dict[str, str]:
    """`a=1, b=two; c` -> {"a": "1", "b": "two", "c": ""}: the key=value convention of
    X-Amzn-SageMaker-Custom-Attributes (SageMaker leaves the format to the container; the
    TensorFlow container's `tfs-method=predict,tfs-model-version=2` is the usual shape)."""
    attributes: dict[str, str] = {}
    if not value:
        return attributes
    for part in value.replace(";", ",").split(","):
        key, _, item = part.partition("=")
        if key.strip():
            attributes[key.strip()] = item.strip()
    return attributes


def request_attributes(context: Context) -> dict[str, str]:
    """The request's custom attributes, parsed (see `parse_custom_attributes`)."""
    return parse_custom_attributes(
        context.get_request_header(0, "x-amzn-sagemaker-custom-attributes")
    )
