"""`GET /metrics`: the Prometheus text exposition of a registry (see `metrics/collection.py`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from polyhost.http.io import send_response
from polyhost.http.types import Receive, Scope, Send

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class MetricsRoute:
    """ASGI route serving one registry, rendered at scrape time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        body = generate_latest(self._registry)
        await send_response(send, 200, body, [(b"content-type", CONTENT_TYPE)])
        return 200
