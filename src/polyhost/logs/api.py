"""CloudWatch Logs' read operations over the containers' log files.

A plain object that knows nothing of HTTP, like the control plane: `call(operation, params,
catalog)` takes a request's decoded JSON and the streams that exist now (endpoint name → its
containers' `LogStream`s, taken from the deployer on the event loop) and returns the answer's
JSON, or raises a `ServiceError`. It runs on a worker thread: it reads files.

Names are SageMaker's: group `/aws/sagemaker/Endpoints/{EndpointName}`, stream
`{VariantName}/{InstanceId}/{ContainerHostname}`, so the group ARN in a ModelError's
LogStreamArn is a valid `logGroupIdentifier` here.

Requests are checked against botocore's `logs` model first (`logs/params.py`); what the model
cannot say (one of two members, not both) is checked here.

Tokens (opaque to clients; `polyhost.tokens`' encoding, a prefix per operation and base64url
JSON, so a forged or cut one is InvalidParameterException, never a failure):
- GetLogEvents: `f/` and `b/` with an absolute position in the container's output (stable
  across rotation). As on CloudWatch, a read that finds nothing new returns the token it was
  given, which is how a client knows it reached the end (or the beginning).
- FilterLogEvents: `p/` with each stream's position.
- DescribeLogGroups: `g/` with the name of the last group returned;
  DescribeLogStreams: `s/` with the index into the (ordered) listing.

Every member of the four operations' inputs is honoured or refused (`SUPPORT`, applied by
`call` after the model's checks; `awsmodel.support` says why nothing is accepted and ignored).

Bounds: `limit` as the model allows, at most 1 MB of events per answer (CloudWatch's cap), and
`SCAN_BYTES` of log looked at per call; a call cut short by that says where it got to (a token
moved on, possibly with no events, as CloudWatch does too).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from polyhost.awsmodel.support import (
    OperationTable,
    Support,
    honoured,
    refusal_message,
    refusals,
    refused,
)
from polyhost.errors import (
    InvalidParameterException,
    ResourceNotFoundException,
    UnknownOperationException,
)
from polyhost.logs.events import (
    LogEvent,
    LogSnapshot,
    Window,
    event_cost,
    open_log,
    read_backward,
    read_forward,
)
from polyhost.logs.filter import parse_filter
from polyhost.logs.params import Params, checked
from polyhost.logs.streams import LogStream
from polyhost.naming import COMPONENT_LOG_GROUP_PREFIX, LOG_GROUP_PREFIX, log_group, log_group_key
from polyhost.tokens import TokenCodec, is_count

Catalog = Mapping[str, Sequence[LogStream]]

MAX_EVENTS = 10_000
MAX_RESPONSE_BYTES = 1024 * 1024
MAX_DESCRIBE = 50
MAX_STREAM_NAMES = 100
SCAN_BYTES = 32 * 1024 * 1024
# A stream's share of a FilterLogEvents scan never drops below this, so each call progresses.
MIN_STREAM_SCAN = 1024 * 1024
BAD_TOKEN = (
    "The specified nextToken is invalid: pass a token from the previous response of the same "
    "operation unchanged, or none to start over."
)


def _bad_token(token: str) -> InvalidParameterException:
    return InvalidParameterException(BAD_TOKEN)


_GROUP_TOKEN = TokenCodec("g/", _bad_token)
_STREAM_TOKEN = TokenCodec("s/", _bad_token)
_FORWARD_TOKEN = TokenCodec("f/", _bad_token)
_BACKWARD_TOKEN = TokenCodec("b/", _bad_token)
_FILTER_TOKEN = TokenCodec("p/", _bad_token)


_GROUP: dict[str, Support] = {
    "logGroupName": honoured("the log group, /aws/sagemaker/Endpoints/<EndpointName>"),
    "logGroupIdentifier": honoured("the log group by name or ARN"),
}
_UNMASK = honoured(
    "no data protection policy masks anything here: every event is shown whole either way"
)

SUPPORT: dict[str, OperationTable] = {
    "DescribeLogGroups": {
        "accountIdentifiers": refused("cross-account observability (this server is one account)"),
        "logGroupNamePrefix": honoured("groups whose name starts with it"),
        "logGroupNamePattern": honoured(
            "groups whose name contains it, case-sensitively; the answer then has only the "
            "group's name, ARN and creation time"
        ),
        "nextToken": honoured("continues the listing where the previous page ended"),
        "limit": honoured("the page's size"),
        "includeLinkedAccounts": honoured(
            "this server is no monitoring account and has no linked accounts: the answer is "
            "the account's own groups"
        ),
        "logGroupClass": honoured("every group here is STANDARD; another class selects none"),
        "logGroupIdentifiers": honoured("those groups only, by name or ARN"),
    },
    "DescribeLogStreams": {
        **_GROUP,
        "logStreamNamePrefix": honoured("streams whose name starts with it"),
        "orderBy": honoured("by name, or by the last event's time"),
        "descending": honoured("the order reversed"),
        "nextToken": honoured("continues the listing where the previous page ended"),
        "limit": honoured("the page's size"),
    },
    "GetLogEvents": {
        **_GROUP,
        "logStreamName": honoured("the stream read"),
        "startTime": honoured("events at or after it (ms)"),
        "endTime": honoured("events before it (ms)"),
        "nextToken": honoured("continues forward or backward from the previous answer"),
        "limit": honoured("events per answer"),
        "startFromHead": honoured("read from the oldest event instead of the newest"),
        "unmask": _UNMASK,
    },
    "FilterLogEvents": {
        **_GROUP,
        "logStreamNames": honoured("those streams only"),
        "logStreamNamePrefix": honoured("streams whose name starts with it"),
        "startTime": honoured("events at or after it (ms)"),
        "endTime": honoured("events before it (ms)"),
        "filterPattern": honoured("CloudWatch Logs' filter syntax (`logs/filter.py`)"),
        "nextToken": honoured("continues where the previous answer ended"),
        "limit": honoured("events per answer"),
        "startFromHead": refused("newest-first filtering", accepts=(True,)),
        "interleaved": honoured(
            "events of all streams always come interleaved by time, whatever the value, as "
            "CloudWatch Logs does since 2019"
        ),
        "unmask": _UNMASK,
    },
}


@dataclass(frozen=True)
class StreamSummary:
    first_ms: int | None
    last_ms: int | None
    created_ms: int
    stored_bytes: int


def summarize(stream: LogStream) -> StreamSummary:
    with open_log(stream.path) as snapshot:
        created = snapshot.first_ms if snapshot.first_ms is not None else snapshot.fallback_ms
        return StreamSummary(snapshot.first_ms, snapshot.last_ms, created, snapshot.stored_bytes)


Handler = Callable[["LogsApi", Params, Catalog], dict[str, Any]]


class LogsApi:
    """DescribeLogGroups, DescribeLogStreams, GetLogEvents and FilterLogEvents."""

    def __init__(self, region: str, account_id: str) -> None:
        self._region = region
        self._account = account_id

    def call(self, operation: str, params: Mapping[str, Any], catalog: Catalog) -> dict[str, Any]:
        handler = _HANDLERS.get(operation)
        if handler is None:
            known = ", ".join(sorted(_HANDLERS))
            raise UnknownOperationException(
                f"Operation {operation[:80]!r} is not served here; CloudWatch Logs operations "
                f"served: {known}."
            )
        typed = checked(operation, params)
        found = refusals(SUPPORT[operation], typed)
        if found:
            raise InvalidParameterException(refusal_message(operation, found))
        return handler(self, typed, catalog)

    # -- names ---------------------------------------------------------------------------------
    def _group_arn(self, group: str) -> str:
        """A log group's ARN (`naming.log_group_arn` takes the endpoint's name instead)."""
        return f"arn:aws:logs:{self._region}:{self._account}:log-group:{group}"

    def _endpoint_of(self, params: Params, catalog: Catalog) -> tuple[str, Sequence[LogStream]]:
        """The endpoint whose group the request names (logGroupName or logGroupIdentifier)."""
        name: str | None = params.get("logGroupName")
        identifier: str | None = params.get("logGroupIdentifier")
        if name is not None and identifier is not None:
            raise InvalidParameterException("Give logGroupName or logGroupIdentifier, not both.")
        if name is None and identifier is None:
            raise InvalidParameterException(
                "logGroupName or logGroupIdentifier is required: the log group "
                f"{LOG_GROUP_PREFIX}<EndpointName> (or {COMPONENT_LOG_GROUP_PREFIX}"
                "<InferenceComponentName>), or its ARN."
            )
        group = name if name is not None else self._group_from_identifier(identifier or "")
        endpoint = log_group_key(group)
        streams = catalog.get(endpoint, ()) if endpoint else ()
        if not streams:
            raise ResourceNotFoundException(
                f"The specified log group does not exist: {group[:600]}. Log groups here are "
                f"{LOG_GROUP_PREFIX}<EndpointName> for endpoints whose containers have started, "
                f"and {COMPONENT_LOG_GROUP_PREFIX}<InferenceComponentName> for components "
                "(DescribeLogGroups lists them)."
            )
        return endpoint, streams

    def _group_from_identifier(self, identifier: str) -> str:
        if not identifier.startswith("arn:"):
            return identifier
        prefix = self._group_arn("")
        group = identifier[len(prefix) :] if identifier.startswith(prefix) else ""
        group = group.removesuffix(":*")
        if not group:
            raise ResourceNotFoundException(
                f"The specified log group does not exist: {identifier[:600]}. A log group ARN "
                f"here is {prefix}<logGroupName> (region {self._region}, account "
                f"{self._account})."
            )
        return group

    @staticmethod
    def _stream_of(params: Params, endpoint: str, streams: Sequence[LogStream]) -> LogStream:
        name: str = params["logStreamName"]
        for stream in streams:
            if stream.name == name:
                return stream
        known = ", ".join(sorted(s.name for s in streams)[:20])
        raise ResourceNotFoundException(
            f"The specified log stream does not exist: {name[:600]} in "
            f"{log_group(endpoint)}; its streams are: {known}."
        )

    # -- DescribeLogGroups ---------------------------------------------------------------------
    def describe_log_groups(self, params: Params, catalog: Catalog) -> dict[str, Any]:
        prefix: str | None = params.get("logGroupNamePrefix")
        pattern: str | None = params.get("logGroupNamePattern")
        if prefix is not None and pattern is not None:
            raise InvalidParameterException(
                "Give logGroupNamePrefix or logGroupNamePattern, not both."
            )
        identifiers: list[str] | None = params.get("logGroupIdentifiers")
        group_class: str | None = params.get("logGroupClass")
        limit: int = params.get("limit") or MAX_DESCRIBE
        after = self._group_token(params.get("nextToken"))
        groups = sorted(
            (log_group(endpoint), endpoint) for endpoint, streams in catalog.items() if streams
        )
        wanted = {self._group_from_identifier(i) for i in identifiers} if identifiers else None
        selected = [
            (group, endpoint)
            for group, endpoint in groups
            if (prefix is None or group.startswith(prefix))
            and (pattern is None or pattern in group)
            and (wanted is None or group in wanted)
            and group_class in (None, "STANDARD")
            and (after is None or group > after)
        ]
        page = selected[:limit]
        described = [self._describe_group(g, catalog[e]) for g, e in page]
        if pattern is not None:  # CloudWatch Logs then answers only these
            kept = ("logGroupName", "creationTime", "arn")
            described = [{k: d[k] for k in kept} for d in described]
        answer: dict[str, Any] = {"logGroups": described}
        if len(selected) > limit:
            answer["nextToken"] = _GROUP_TOKEN.encode({"g": page[-1][0]})
        return answer

    def _describe_group(self, group: str, streams: Sequence[LogStream]) -> dict[str, Any]:
        summaries = [summarize(s) for s in streams]
        arn = self._group_arn(group)
        return {
            "logGroupName": group,
            "creationTime": min(s.created_ms for s in summaries),
            "metricFilterCount": 0,
            "arn": arn + ":*",
            "storedBytes": sum(s.stored_bytes for s in summaries),
            "logGroupClass": "STANDARD",
            "logGroupArn": arn,
        }

    @staticmethod
    def _group_token(token: str | None) -> str | None:
        if token is None:
            return None
        group = _GROUP_TOKEN.decode(token).get("g")
        if not isinstance(group, str) or not group:
            raise _bad_token(token)
        return group

    # -- DescribeLogStreams --------------------------------------------------------------------
    def describe_log_streams(self, params: Params, catalog: Catalog) -> dict[str, Any]:
        endpoint, streams = self._endpoint_of(params, catalog)
        prefix: str | None = params.get("logStreamNamePrefix")
        order: str = params.get("orderBy") or "LogStreamName"
        if order == "LastEventTime" and prefix is not None:
            raise InvalidParameterException(
                "Cannot order by LastEventTime with a logStreamNamePrefix: leave one out."
            )
        descending = bool(params.get("descending"))
        limit = params.get("limit") or MAX_DESCRIBE
        token = params.get("nextToken")
        start = 0
        if token is not None:
            index = _STREAM_TOKEN.decode(token).get("i")
            if not is_count(index, 10**9):
                raise _bad_token(token)
            start = index
        chosen = sorted(
            (s for s in streams if prefix is None or s.name.startswith(prefix)),
            key=lambda s: s.name,
        )
        summaries = {s.name: summarize(s) for s in chosen}
        if order == "LastEventTime":
            chosen.sort(key=lambda s: (summaries[s.name].last_ms or 0, s.name))
        if descending:
            chosen.reverse()
        page = chosen[start : start + limit]
        group_arn = self._group_arn(log_group(endpoint))
        answer: dict[str, Any] = {
            "logStreams": [self._describe_stream(s, summaries[s.name], group_arn) for s in page]
        }
        if start + limit < len(chosen):
            answer["nextToken"] = _STREAM_TOKEN.encode({"i": start + limit})
        return answer

    @staticmethod
    def _describe_stream(
        stream: LogStream, summary: StreamSummary, group_arn: str
    ) -> dict[str, Any]:
        described: dict[str, Any] = {
            "logStreamName": stream.name,
            "creationTime": summary.created_ms,
            "arn": f"{group_arn}:log-stream:{stream.name}",
            "storedBytes": summary.stored_bytes,
        }
        if summary.first_ms is not None and summary.last_ms is not None:
            described["firstEventTimestamp"] = summary.first_ms
            described["lastEventTimestamp"] = summary.last_ms
            described["lastIngestionTime"] = summary.last_ms
        return described

    # -- GetLogEvents --------------------------------------------------------------------------
    def get_log_events(self, params: Params, catalog: Catalog) -> dict[str, Any]:
        endpoint, streams = self._endpoint_of(params, catalog)
        stream = self._stream_of(params, endpoint, streams)
        window = _window(params)
        limit = params.get("limit") or MAX_EVENTS
        from_head = bool(params.get("startFromHead"))
        token = params.get("nextToken")
        parsed = None if token is None else _events_token(token)
        with open_log(stream.path) as snapshot:
            if parsed is not None:
                direction, position = parsed
            elif from_head:
                direction, position = "f", _position_of(snapshot, window.start_ms, snapshot.start)
            else:
                end = window.end_ms
                direction = "b"
                position = snapshot.end if end is None else _position_of(snapshot, end, None)
            bounds = {"limit": limit, "max_bytes": MAX_RESPONSE_BYTES, "scan_bytes": SCAN_BYTES}
            if direction == "f":
                page = read_forward(snapshot, position, window, **bounds)
                backward = page.events[0].position if page.events else page.first
                forward = page.next
            else:
                page = read_backward(snapshot, position, window, **bounds)
                backward, forward = page.first, page.next
        return {
            "events": [
                {"timestamp": e.timestamp, "message": e.message, "ingestionTime": e.timestamp}
                for e in page.events
            ],
            "nextForwardToken": _FORWARD_TOKEN.encode({"p": forward}),
            "nextBackwardToken": _BACKWARD_TOKEN.encode({"p": backward}),
        }

    # -- FilterLogEvents -----------------------------------------------------------------------
    def filter_log_events(self, params: Params, catalog: Catalog) -> dict[str, Any]:
        _, streams = self._endpoint_of(params, catalog)
        names: list[str] | None = params.get("logStreamNames")
        prefix: str | None = params.get("logStreamNamePrefix")
        if names is not None and prefix is not None:
            raise InvalidParameterException("Give logStreamNames or logStreamNamePrefix, not both.")
        window = _window(params)
        matcher = parse_filter(params.get("filterPattern") or "")
        if not matcher.matches_all:
            window = Window(window.start_ms, window.end_ms, matcher)
        limit = params.get("limit") or MAX_EVENTS
        cursors = _filter_cursors(params.get("nextToken"))
        chosen = sorted(
            (
                s
                for s in streams
                if (names is None or s.name in names)
                and (prefix is None or s.name.startswith(prefix))
            ),
            key=lambda s: s.name,
        )[:MAX_STREAM_NAMES]
        share = max(SCAN_BYTES // max(len(chosen), 1), MIN_STREAM_SCAN)
        found: list[tuple[LogEvent, str]] = []
        reached: dict[str, int] = {}
        complete: dict[str, bool] = {}
        for stream in chosen:
            with open_log(stream.path) as snapshot:
                position = cursors.get(stream.name)
                if position is None:
                    position = _position_of(snapshot, window.start_ms, snapshot.start)
                page = read_forward(
                    snapshot, position, window,
                    limit=limit, max_bytes=MAX_RESPONSE_BYTES, scan_bytes=share,
                )  # fmt: skip
            found.extend((event, stream.name) for event in page.events)
            reached[stream.name] = page.next
            complete[stream.name] = page.complete
        found.sort(key=lambda item: (item[0].timestamp, item[1], item[0].position))
        kept: list[tuple[LogEvent, str]] = []
        spent = 0
        for event, name in found:
            cost = event_cost(event)
            if len(kept) >= limit or (kept and spent + cost > MAX_RESPONSE_BYTES):
                break
            kept.append((event, name))
            spent += cost
        for event, name in found[len(kept) :]:  # left out: read again from there next time
            if reached[name] > event.position:
                reached[name] = event.position
                complete[name] = False
        answer: dict[str, Any] = {
            "events": [
                {
                    "logStreamName": name,
                    "timestamp": event.timestamp,
                    "message": event.message,
                    "ingestionTime": event.timestamp,
                    "eventId": _event_id(name, event.position),
                }
                for event, name in kept
            ],
            "searchedLogStreams": [
                {"logStreamName": s.name, "searchedCompletely": complete[s.name]} for s in chosen
            ],
        }
        if not all(complete.values()):
            answer["nextToken"] = _FILTER_TOKEN.encode({"c": reached})
        return answer


def _window(params: Params) -> Window:
    start: int | None = params.get("startTime")
    end: int | None = params.get("endTime")
    if start is not None and end is not None and end < start:
        raise InvalidParameterException(
            f"endTime ({end}) is before startTime ({start}); both are milliseconds since "
            "1970-01-01 UTC and endTime is exclusive."
        )
    return Window(start or 0, end)


def _position_of(snapshot: LogSnapshot, ms: int, default: int | None) -> int:
    """Where lines written at or after `ms` begin (`default` when no time is given: 0)."""
    if ms <= 0 and default is not None:
        return default
    return snapshot.position_of_time(ms)


def _event_id(stream_name: str, position: int) -> str:
    """Unique per event: the stream's checksum and the event's position, as digits."""
    return f"{zlib.crc32(stream_name.encode('utf-8', 'surrogatepass')):010d}{position:020d}"


def _events_token(token: str) -> tuple[str, int]:
    """A GetLogEvents token: its direction (`f`orward or `b`ackward) and position."""
    codec = _FORWARD_TOKEN if token.startswith("f/") else _BACKWARD_TOKEN
    position = codec.decode(token).get("p")
    if not is_count(position):
        raise _bad_token(token)
    return ("f" if codec is _FORWARD_TOKEN else "b"), position


def _filter_cursors(token: str | None) -> dict[str, int]:
    if token is None:
        return {}
    cursors = _FILTER_TOKEN.decode(token).get("c")
    if not isinstance(cursors, dict) or len(cursors) > MAX_STREAM_NAMES:
        raise _bad_token(token)
    if not all(is_count(position) for position in cursors.values()):
        raise _bad_token(token)
    return cursors


_HANDLERS: dict[str, Handler] = {
    "DescribeLogGroups": LogsApi.describe_log_groups,
    "DescribeLogStreams": LogsApi.describe_log_streams,
    "GetLogEvents": LogsApi.get_log_events,
    "FilterLogEvents": LogsApi.filter_log_events,
}
