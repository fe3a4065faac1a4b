"""The admin listener's JSON API, read by the dashboard and `polyhost top`.

    GET /api/containers   every container replica: endpoint, variant, instance, hostname,
                          status, restarts, requests/s, error rate, p50/p99 latency (ms), CPU,
                          memory (`metrics/overview.py` says over which window)
    GET /api/series?endpoint=E&metric=M[&container=C][&variant=V][&instance=I][&range=1h]
                          one metric's datapoints over 1h, 3h, 24h or 7d (`metrics/charts.py`);
                          M is a CloudWatch name (Invocations, ContainerLatency, CPUUtilization...)
    GET /api/endpoints    every endpoint as the control plane describes it (with the inference
                          components it hosts: status and copies): status, variants
                          with their instance counts, FailureReason; an asynchronous one also
                          its backlog (requests queued or running, the oldest one's age in
                          seconds, the instances running them), null for the others;
                          and how it is hosted now (`http/admin/hosting.py`): a deployment's
                          progress while UpdateEndpoint shifts traffic (`deployment`), each
                          variant's shadow flag and live traffic (a shadow variant listed
                          beside the production one), a serverless variant's config and
                          warm or cold state; with the server's shadow-copy counters
    GET /api/logs?endpoint=E&container=C[&variant=V][&instance=I][&lines=N]
                          the last N lines (default 200, at most 1000, within the last
                          `LOG_TAIL_BYTES` of each file) of the container's log, one entry per
                          replica; read with `logs/streams.py`'s `read_chunk`, as `polyhost logs`
    GET /api/scaling[?range=1h]
                          every Application Auto Scaling target (at most 50): Min/Max, policies,
                          capacity now, its last 20 activities newest first, and its recorded
                          capacity and invocations over the range (`http/admin/scaling.py`)

Why a separate API instead of the CloudWatch one on the main port: these answers are shaped
for one screen (a row per container, numbers already turned into rates and milliseconds), need
no signing, and stay on the operator's port.

The control plane is reached through its `call(operation, params)` (the same entry the AWS JSON
adapter uses), so this module knows nothing of its types. Control-plane calls and history reads
run in worker threads (both may touch SQLite); the samples are taken on the event loop, where
the deployer keeps them, as is the list of log streams. Answers are bounded: the container list
by what runs, a series by the range's period and `charts.MAX_SERIES`, the endpoint list by
`MAX_ENDPOINTS`, a log tail by `LOG_TAIL_BYTES` per stream and `MAX_LOG_STREAMS` streams.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs

from polyhost.deploy.progress import DeploymentProgress
from polyhost.errors import NoSuchRoute, NotFound, ServiceError, ValidationException
from polyhost.http.admin.hosting import (
    EndpointHosting,
    HostingSnapshot,
    HostingSource,
    ServerlessState,
    VariantHosting,
)
from polyhost.http.admin.scaling import ServiceCall, scaling
from polyhost.http.errors import aws_json_error
from polyhost.http.io import send_response
from polyhost.http.types import Receive, Scope, Send
from polyhost.logs.streams import LogStream, read_chunk
from polyhost.metrics import catalog
from polyhost.metrics.asynchronous import BacklogSample
from polyhost.metrics.charts import METRICS, RANGES, Series, SeriesQuery, chart
from polyhost.metrics.collection import SampleSource
from polyhost.metrics.overview import container_overviews
from polyhost.metrics.query import Datapoint, MetricId, MetricsReader, dimensions

PREFIX = "/api"
ControlCall = Callable[[str, dict[str, Any]], dict[str, Any]]
# Every endpoint's log streams (the deployer's `all_log_streams`, read on the event loop).
LogCatalog = Callable[[], Mapping[str, Sequence[LogStream]]]
# Every asynchronous endpoint's backlog now (the queue worker's `backlog`, on the event loop).
BacklogSource = Callable[[], Awaitable[Sequence[BacklogSample]]]
MAX_ENDPOINTS = 1000
MAX_NAME = 256
DEFAULT_LOG_LINES = 200
MAX_LOG_LINES = 1000
LOG_TAIL_BYTES = 64 * 1024
MAX_LOG_STREAMS = 16
_JSON = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
_SERIES_PARAMETERS = ("endpoint", "metric", "container", "variant", "instance", "range")
_LOG_PARAMETERS = ("endpoint", "container", "variant", "instance", "lines")
_SCALING_PARAMETERS = ("range",)
# How far back a cold serverless variant's last ModelSetupTime is looked for, and in what
# periods (the newest period with data is the last cold start's).
SETUP_LOOKBACK_S = 24 * 3600
SETUP_PERIOD_S = 300


class AdminApi:
    """The ASGI route for everything under /api. `reader` is None when no history is kept;
    `logs` None when the server hands no log streams over (then /api/logs says so); `backlog`
    None when there is no asynchronous queue (every endpoint's backlog is then null);
    `autoscaling` (Application Auto Scaling's `call`) None when the server hands none over
    (then /api/scaling says so); `hosting` (`http/admin/hosting.py`, on the event loop) None
    when the server hands no view of its deployer and router over (then every endpoint's
    `deployment` is null and its variants carry no live state)."""

    def __init__(
        self,
        samples: SampleSource,
        reader: MetricsReader | None,
        control: ControlCall,
        clock: Callable[[], float] = time.time,
        logs: LogCatalog | None = None,
        backlog: BacklogSource | None = None,
        autoscaling: ServiceCall | None = None,
        hosting: HostingSource | None = None,
    ) -> None:
        self._samples = samples
        self._hosting = hosting
        self._autoscaling = autoscaling
        self._backlog = backlog
        self._reader = reader
        self._control = control
        self._clock = clock
        self._logs = logs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> int:
        path: str = scope["path"]
        try:
            if path == PREFIX + "/containers":
                answer = await self._containers()
            elif path == PREFIX + "/series":
                answer = await self._series(scope.get("query_string", b""))
            elif path == PREFIX + "/endpoints":
                answer = await self._endpoints()
            elif path == PREFIX + "/logs":
                answer = await self._log_tail(scope.get("query_string", b""))
            elif path == PREFIX + "/scaling":
                answer = await self._scaling(scope.get("query_string", b""))
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
        shadows: set[tuple[str, str]] = set()
        if self._hosting is not None:
            snapshot = self._hosting({s.endpoint_name for s in samples})
            shadows = {
                (e.name, v.name)
                for e in snapshot.endpoints.values()
                for v in e.variants
                if v.shadow
            }
        rows = await asyncio.to_thread(container_overviews, samples, self._reader, self._clock())
        return {
            "history": self._reader is not None,
            "containers": [
                {
                    **asdict(row),
                    "status": row.status,
                    "shadow": (row.endpoint, row.variant) in shadows,
                }
                for row in rows
            ],
        }

    async def _endpoints(self) -> dict[str, Any]:
        answer = await asyncio.to_thread(endpoints, self._control)
        if self._hosting is not None:
            # On the loop, where the deployer and the router keep it; rendered in a thread, as
            # a cold serverless variant's last cold start may be read from the history.
            snapshot = self._hosting([e["name"] for e in answer["endpoints"]])
            await asyncio.to_thread(with_hosting, answer, snapshot, self._reader, self._clock())
        else:
            answer["shadow_copies"] = None
            for endpoint in answer["endpoints"]:
                endpoint["deployment"] = None
        backlog = {} if self._backlog is None else {b.endpoint: b for b in await self._backlog()}
        for endpoint in answer["endpoints"]:
            sample = backlog.get(endpoint["name"])
            endpoint["backlog"] = (
                None
                if sample is None
                else {
                    "size": sample.size,
                    "oldest_age_s": sample.oldest_age_s,
                    "instances": sample.instances,
                }
            )
        return answer

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

    async def _scaling(self, query_string: bytes) -> dict[str, Any]:
        range_name = parse_scaling_query(query_string)
        if self._autoscaling is None:
            raise NotFound("This server does not hand Application Auto Scaling to the admin API.")
        return await asyncio.to_thread(
            scaling, self._autoscaling, self._control, self._reader, range_name, self._clock()
        )

    async def _log_tail(self, query_string: bytes) -> dict[str, Any]:
        query = parse_log_query(query_string)
        if self._logs is None:
            raise NotFound("This server does not hand container logs to the admin listener.")
        chosen = select_streams(self._logs(), query)  # on the loop: the deployer's state
        lines = query.lines

        def read() -> list[dict[str, Any]]:
            out = []
            for stream in chosen:
                chunk = read_chunk(stream.path, 0, LOG_TAIL_BYTES, lines)
                out.append(
                    {
                        "name": stream.name,
                        "variant": stream.variant_name,
                        "instance": stream.instance_id,
                        "container": stream.hostname,
                        "size": chunk.size,
                        "offset": chunk.offset,
                        "text": chunk.text,
                    }
                )
            return out

        return {"endpoint": query.endpoint, "streams": await asyncio.to_thread(read)}


def _single_params(query_string: bytes, known: tuple[str, ...]) -> dict[str, str]:
    """Each query parameter's one value; ValidationException for anything else."""
    try:
        params = parse_qs(query_string.decode("ascii"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise ValidationException(
            "The query string must be ASCII, with UTF-8 percent-encoded (e.g. %C3%A9)."
        ) from None
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValidationException(
            f"Unknown query parameter(s) {', '.join(u[:64] for u in unknown[:5])}; "
            f"known: {', '.join(known)}."
        )
    single: dict[str, str] = {}
    for key, values in params.items():
        if len(values) > 1:
            raise ValidationException(f"Query parameter {key} is given more than once.")
        if len(values[0]) > MAX_NAME:
            raise ValidationException(f"Query parameter {key} is longer than {MAX_NAME}.")
        single[key] = values[0]
    return single


@dataclass(frozen=True, slots=True)
class LogQuery:
    endpoint: str
    container: str
    variant: str | None = None
    instance: str | None = None
    lines: int = DEFAULT_LOG_LINES


def parse_log_query(query_string: bytes) -> LogQuery:
    """The query of /api/logs; ValidationException names what is wrong."""
    single = _single_params(query_string, _LOG_PARAMETERS)
    for required in ("endpoint", "container"):
        if not single.get(required):
            raise ValidationException(f"Query parameter {required} is required.")
    raw_lines = single.get("lines") or str(DEFAULT_LOG_LINES)
    if not raw_lines.isdigit() or not 1 <= int(raw_lines) <= MAX_LOG_LINES:
        raise ValidationException(
            f"Query parameter lines must be a whole number from 1 to {MAX_LOG_LINES}, "
            f"not {raw_lines[:16]!r}."
        )
    return LogQuery(
        endpoint=single["endpoint"],
        container=single["container"],
        variant=single.get("variant") or None,
        instance=single.get("instance") or None,
        lines=int(raw_lines),
    )


def select_streams(catalog: Mapping[str, Sequence[LogStream]], query: LogQuery) -> list[LogStream]:
    """The streams of the container the query names (every replica unless one is named)."""
    streams = catalog.get(query.endpoint, ())
    if not streams:
        raise NotFound(
            f"Endpoint {query.endpoint[:64]!r} has no container logs: it does not exist or none "
            "of its containers has started yet."
        )
    chosen = [
        s
        for s in streams
        if s.hostname == query.container
        and (query.variant is None or s.variant_name == query.variant)
        and (query.instance is None or s.instance_id == query.instance)
    ]
    if not chosen:
        known = ", ".join(sorted({s.hostname for s in streams})[:20])
        raise NotFound(
            f"Endpoint {query.endpoint[:64]!r} has no log of container {query.container[:64]!r}"
            f"{' on that variant/instance' if query.variant or query.instance else ''}; "
            f"its containers are: {known}."
        )
    chosen.sort(key=lambda s: s.name)
    return chosen[:MAX_LOG_STREAMS]


def parse_scaling_query(query_string: bytes) -> str:
    """The range of /api/scaling (1h by default); ValidationException names what is wrong."""
    range_name = _single_params(query_string, _SCALING_PARAMETERS).get("range") or "1h"
    if range_name not in RANGES:
        raise ValidationException(f"Unknown range {range_name[:16]!r}; known: {', '.join(RANGES)}.")
    return range_name


def parse_series_query(query_string: bytes) -> SeriesQuery:
    """The query of /api/series; ValidationException names what is wrong."""
    single = _single_params(query_string, _SERIES_PARAMETERS)
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
    names, more = _names(call, "ListEndpoints", "Endpoints", "EndpointName")
    hosted = _components(call)
    out = []
    for name in names:
        try:
            described = call("DescribeEndpoint", {"EndpointName": name})
        except ServiceError:
            continue  # deleted since it was listed
        endpoint = _endpoint(described)
        endpoint["components"] = hosted.get(name.lower(), [])
        out.append(endpoint)
    return {"endpoints": out, "truncated": more}


def _names(call: ControlCall, operation: str, key: str, member: str) -> tuple[list[str], bool]:
    """The names a List* operation gives, by name, at most MAX_ENDPOINTS; whether there are
    more than that."""
    names: list[str] = []
    token: str | None = None
    while len(names) < MAX_ENDPOINTS:
        params: dict[str, Any] = {"MaxResults": 100, "SortBy": "Name", "SortOrder": "Ascending"}
        if token:
            params["NextToken"] = token
        page = call(operation, params)
        names += [item[member] for item in page.get(key, [])]
        token = page.get("NextToken")
        if not token:
            break
    return names[:MAX_ENDPOINTS], len(names) >= MAX_ENDPOINTS and bool(token)


def _components(call: ControlCall) -> dict[str, list[dict[str, Any]]]:
    """Every inference component (at most MAX_ENDPOINTS), by its endpoint's lowercased name:
    name, status, copies and failure reason, as DescribeInferenceComponent says."""
    names, _ = _names(
        call, "ListInferenceComponents", "InferenceComponents", "InferenceComponentName"
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        try:
            described = call("DescribeInferenceComponent", {"InferenceComponentName": name})
        except ServiceError:
            continue  # deleted since it was listed
        runtime = described.get("RuntimeConfig") or {}
        found.setdefault(str(described["EndpointName"]).lower(), []).append(
            {
                "name": name,
                "variant": described.get("VariantName"),
                "status": described.get("InferenceComponentStatus"),
                "desired_copies": runtime.get("DesiredCopyCount"),
                "current_copies": runtime.get("CurrentCopyCount"),
                "failure_reason": described.get("FailureReason"),
            }
        )
    return found


def _endpoint(described: dict[str, Any]) -> dict[str, Any]:
    variants = []
    shadows = [(v, True) for v in described.get("ShadowProductionVariants") or []]
    for variant, shadow in [(v, False) for v in described.get("ProductionVariants", [])] + shadows:
        statuses = variant.get("VariantStatus") or []
        config = variant.get("CurrentServerlessConfig")
        variants.append(
            {
                "name": variant.get("VariantName"),
                "current_instance_count": variant.get("CurrentInstanceCount"),
                "desired_instance_count": variant.get("DesiredInstanceCount"),
                "status": [s.get("Status") for s in statuses],
                "shadow": shadow,
                "serverless": None if not config else _serverless_config(config),
                "traffic": None,
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


def _serverless_config(config: dict[str, Any]) -> dict[str, Any]:
    """A serverless variant as DescribeEndpoint has it; its live state is unknown (null)
    until `with_hosting` fills it in."""
    return {
        "memory_mb": config.get("MemorySizeInMB"),
        "max_concurrency": config.get("MaxConcurrency"),
        "provisioned_concurrency": config.get("ProvisionedConcurrency"),
        "state": None,
        "in_flight": None,
        "cold_starts": None,
        "last_cold_start_s": None,
        "throttled": None,
    }


def with_hosting(
    answer: dict[str, Any],
    snapshot: HostingSnapshot,
    reader: MetricsReader | None,
    now: float,
) -> None:
    """Add to `endpoints`'s answer how each endpoint is hosted now (worker thread: a cold
    serverless variant's last cold start is read from the metric history)."""
    answer["shadow_copies"] = {
        "sent": snapshot.shadow_sent,
        "dropped": snapshot.shadow_dropped,
        "in_flight": snapshot.shadow_in_flight,
    }
    for endpoint in answer["endpoints"]:
        hosted = snapshot.endpoints.get(endpoint["name"])
        progress = None if hosted is None else hosted.deployment
        endpoint["deployment"] = None if progress is None else deployment_json(progress, now)
        if hosted is not None:
            _variants_with_hosting(endpoint, hosted, reader, now)


def _variants_with_hosting(
    endpoint: dict[str, Any], hosted: EndpointHosting, reader: MetricsReader | None, now: float
) -> None:
    live = {v.name: v for v in hosted.variants}
    for variant in endpoint["variants"]:
        found = live.get(variant["name"])
        if found is None:
            continue  # not (or no longer) in the serving revision: a deployment under way
        variant["shadow"] = variant["shadow"] or found.shadow
        variant["traffic"] = {
            "invocations": found.traffic.invocations,
            "errors_4xx": found.traffic.errors_4xx,
            "errors_5xx": found.traffic.errors_5xx,
            "mean_latency_ms": found.traffic.mean_latency_ms,
        }
        if found.serverless is not None:
            variant["serverless"] = serverless_json(
                endpoint["name"], found, found.serverless, reader, now
            )


def serverless_json(
    endpoint_name: str,
    variant: VariantHosting,
    state: ServerlessState,
    reader: MetricsReader | None,
    now: float,
) -> dict[str, Any]:
    """A serverless variant: its ServerlessConfig, warm (a container routed), starting (a cold
    start under way) or cold (none), and its last cold start's ModelSetupTime: the running
    container's own when warm, else the newest the history recorded, None when unknown."""
    last = state.last_setup_s
    if last is None and reader is not None:
        last = _last_setup_s(reader, endpoint_name, variant.name, state.containers, now)
    return {
        "memory_mb": state.memory_mb,
        "max_concurrency": state.max_concurrency,
        "provisioned_concurrency": state.provisioned_concurrency,
        "state": "warm" if state.warm else "starting" if state.starting else "cold",
        "in_flight": state.in_flight,
        "cold_starts": state.cold_starts,
        "last_cold_start_s": last,
        "throttled": state.throttled,
    }


def _last_setup_s(
    reader: MetricsReader, endpoint: str, variant: str, containers: Sequence[str], now: float
) -> float | None:
    """The newest ModelSetupTime (seconds) the history has of the variant's containers within
    `SETUP_LOOKBACK_S`: the container that served the last cold start has stopped since."""
    newest: tuple[float, float] | None = None
    for container in containers:
        dims = dimensions(EndpointName=endpoint, VariantName=variant, ContainerName=container)
        metric = MetricId(catalog.MODEL_SETUP_TIME.namespace, catalog.MODEL_SETUP_TIME.name, dims)
        points = reader.statistics(metric, now - SETUP_LOOKBACK_S, now, SETUP_PERIOD_S)
        if points and (newest is None or points[-1].timestamp > newest[0]):
            newest = (points[-1].timestamp, points[-1].maximum / 1_000_000.0)
    return None if newest is None else newest[1]


def deployment_json(progress: DeploymentProgress, now: float) -> dict[str, Any]:
    """A deployment's progress as the dashboard shows it: the policy and phase, the new
    fleet's instances taking traffic of those wanted and the old fleet's still taking it, the
    from and to EndpointConfigName, when the bake (or termination wait) ends and how long is
    left of it at `now`, and why it rolls back."""
    ends = progress.phase_ends_at
    return {
        "policy": progress.policy,
        "phase": progress.phase,
        "from_config": progress.from_config,
        "to_config": progress.to_config,
        "new_instances": progress.new_instances,
        "wanted_instances": progress.wanted_instances,
        "old_instances": progress.old_instances,
        "started_at": progress.started_at,
        "elapsed_s": max(now - progress.started_at, 0.0),
        "phase_ends_at": ends,
        "phase_remaining_s": None if ends is None else max(ends - now, 0.0),
        "reason": progress.reason,
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
