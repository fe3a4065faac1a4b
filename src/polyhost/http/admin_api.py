"""The admin listener's JSON API, read by the dashboard and `polyhost top`.

    GET /api/containers   every container replica: endpoint, variant, instance, hostname,
                          status, restarts, requests/s, error rate, p50/p99 latency (ms), CPU,
                          memory (`metrics/overview.py` says over which window)
    GET /api/series?endpoint=E&metric=M[&container=C][&variant=V][&instance=I][&range=1h]
                          one metric's datapoints over 1h, 3h, 24h or 7d (`metrics/charts.py`);
                          M is a CloudWatch name (Invocations, ContainerLatency, CPUUtilization...)
    GET /api/endpoints    every endpoint as the control plane describes it: status, variants
                          with their instance counts, FailureReason

Why a separate API instead of the CloudWatch one on the main port: these answers are shaped
for one screen (a row per container, numbers already turned into rates and milliseconds), need
no signing, and stay on the operator's port.

The control plane is reached through its `call(operation, params)` (the same entry the AWS JSON
adapter uses), so this module knows nothing of its types. Control-plane calls and history reads
run in worker threads (both may touch SQLite); the samples are taken on the event loop, where
the deployer keeps them. Answers are bounded: the container list by what runs, a series by the
range's period and `charts.MAX_SERIES`, the endpoint list by `MAX_ENDPOINTS`.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qs

from polyhost.errors import NoSuchRoute, ServiceError, ValidationException
from polyhost.http.errors import aws_json_error
from polyhost.http.io import send_response
from polyhost.http.types import Receive, Scope, Send
from polyhost.metrics.charts import METRICS, RANGES, Series, SeriesQuery, chart
from polyhost.metrics.collection import SampleSource
from polyhost.metrics.overview import container_overviews
from polyhost.metrics.query import Datapoint, MetricsReader

PREFIX = "/api"
ControlCall = Callable[[str, dict[str, Any]], dict[str, Any]]
MAX_ENDPOINTS = 1000
MAX_NAME = 256
_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
_SERIES_PARAMETERS = ("endpoint", "metric", "container", "variant", "instance", "range")


class AdminApi:
    """The ASGI route for everything under /api. `reader` is None when no history is kept."""

    def __init__(
        self,
        samples: SampleSource,
        reader: MetricsReader | None,
        control: ControlCall,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._samples = samples
        self._reader = reader
        self._control = control
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        path: str = scope["path"]
        try:
            if path == PREFIX + "/containers":
                answer = await self._containers()
            elif path == PREFIX + "/series":
                answer = await self._series(scope.get("query_string", b""))
            elif path == PREFIX + "/endpoints":
                answer = await asyncio.to_thread(endpoints, self._control)
            else:
                raise NoSuchRoute(f"No route for GET {path[:200]}.")
        except ServiceError as error:
            status, headers, body = aws_json_error(error)
            await send_response(send, status, body, headers)
            return status
        await send_response(send, 200, _encode(answer), _JSON)
        return 200

    async def _containers(self) -> dict[str, Any]:
        samples = list(self._samples())  # on the loop: the deployer's state lives there
        rows = await asyncio.to_thread(container_overviews, samples, self._reader, self._clock())
        return {
            "history": self._reader is not None,
            "containers": [{**asdict(row), "status": row.status} for row in rows],
        }

    async def _series(self, query_string: bytes) -> dict[str, Any]:
        query = parse_series_query(query_string)
        series: list[Series] = []
        if self._reader is None:
            period = RANGES[query.range_name][1]
        else:
            period, series = await asyncio.to_thread(chart, self._reader, query, self._clock())
        return {
            "endpoint": query.endpoint,
            "metric": query.metric.name,
            "unit": query.metric.unit,
            "range": query.range_name,
            "period": period,
            "series": [
                {
                    "variant": s.variant,
                    "container": s.container,
                    "instance": s.instance,
                    "datapoints": [_point(p) for p in s.datapoints],
                }
                for s in series
            ],
        }


def parse_series_query(query_string: bytes) -> SeriesQuery:
    """The query of /api/series; ValidationException names what is wrong."""
    try:
        params = parse_qs(query_string.decode("ascii"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise ValidationException("The query string must be ASCII (percent-encode it).") from None
    unknown = sorted(set(params) - set(_SERIES_PARAMETERS))
    if unknown:
        raise ValidationException(
            f"Unknown query parameter(s) {', '.join(u[:64] for u in unknown[:5])}; "
            f"known: {', '.join(_SERIES_PARAMETERS)}."
        )
    single: dict[str, str] = {}
    for key, values in params.items():
        if len(values) > 1:
            raise ValidationException(f"Query parameter {key} is given more than once.")
        if len(values[0]) > MAX_NAME:
            raise ValidationException(f"Query parameter {key} is longer than {MAX_NAME}.")
        single[key] = values[0]
    for required in ("endpoint", "metric"):
        if not single.get(required):
            raise ValidationException(f"Query parameter {required} is required.")
    metric = METRICS.get(single["metric"])
    if metric is None:
        raise ValidationException(
            f"Unknown metric {single['metric'][:64]!r}; known: {', '.join(sorted(METRICS))}."
        )
    range_name = single.get("range") or "1h"
    if range_name not in RANGES:
        raise ValidationException(f"Unknown range {range_name[:16]!r}; known: {', '.join(RANGES)}.")
    return SeriesQuery(
        endpoint=single["endpoint"],
        metric=metric,
        range_name=range_name,
        container=single.get("container") or None,
        variant=single.get("variant") or None,
        instance=single.get("instance") or None,
    )


def endpoints(call: ControlCall) -> dict[str, Any]:
    """Every endpoint, described (worker thread: the control plane reads SQLite)."""
    names: list[str] = []
    token: str | None = None
    while len(names) < MAX_ENDPOINTS:
        params: dict[str, Any] = {"MaxResults": 100, "SortBy": "Name", "SortOrder": "Ascending"}
        if token:
            params["NextToken"] = token
        page = call("ListEndpoints", params)
        names += [e["EndpointName"] for e in page.get("Endpoints", [])]
        token = page.get("NextToken")
        if not token:
            break
    out = []
    for name in names[:MAX_ENDPOINTS]:
        try:
            described = call("DescribeEndpoint", {"EndpointName": name})
        except ServiceError:
            continue  # deleted since it was listed
        out.append(_endpoint(described))
    return {"endpoints": out, "truncated": len(names) >= MAX_ENDPOINTS and bool(token)}


def _endpoint(described: dict[str, Any]) -> dict[str, Any]:
    variants = []
    for variant in described.get("ProductionVariants", []):
        statuses = variant.get("VariantStatus") or []
        variants.append(
            {
                "name": variant.get("VariantName"),
                "current_instance_count": variant.get("CurrentInstanceCount"),
                "desired_instance_count": variant.get("DesiredInstanceCount"),
                "status": [s.get("Status") for s in statuses],
            }
        )
    return {
        "name": described.get("EndpointName"),
        "status": described.get("EndpointStatus"),
        "failure_reason": described.get("FailureReason"),
        "config": described.get("EndpointConfigName"),
        "created": _epoch(described.get("CreationTime")),
        "modified": _epoch(described.get("LastModifiedTime")),
        "variants": variants,
    }


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return float(value)


def _point(point: Datapoint) -> dict[str, Any]:
    out: dict[str, Any] = {
        "timestamp": point.timestamp,
        "sample_count": point.sample_count,
        "sum": point.sum,
        "average": point.average,
        "minimum": point.minimum,
        "maximum": point.maximum,
    }
    for percentile, value in point.percentiles.items():
        out[f"p{percentile:g}"] = value
    return out


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such a number goes out as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _encode(answer: dict[str, Any]) -> bytes:
    return json.dumps(_finite(answer), separators=(",", ":"), allow_nan=False).encode()
