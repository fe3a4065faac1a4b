"""CloudWatch's read API over the metric history: ListMetrics, GetMetricStatistics,
GetMetricData, with CloudWatch's rules and error codes; the alarm operations go to
`metrics/alarms.py`, which evaluates alarms on the same history.

Plain values in, plain values out: the wire adapter (`http/services/cloudwatch.py`) has already
decoded the request in whichever protocol it came (rpc-v2-cbor, JSON 1.0, query) and checked it
against botocore's model (types, required members, lengths, enums), timestamps made epoch
seconds. What the model cannot say is checked here: periods, the time range, statistic names,
query ids, the datapoint limits, tokens. Answers carry timestamps as `Timestamp`s (epoch
seconds), which each protocol writes its own way.

What polyhost keeps, and so what a period may be: 10-second data for 3 hours, 1-minute
roll-ups for 15 days. A Period of 10, 20 or 30 s reads the last 3 hours only (as CloudWatch's
high-resolution data); a multiple of 60 reads 15 days. Unknown metrics answer no datapoints,
as on CloudWatch; metric math (`Expression`) is refused with a clear message.

Every member of the three operations' inputs is honoured or refused (`SUPPORT`, applied by
`call` before the operation runs; `awsmodel.support` says why nothing is accepted and ignored).
Cross-account observability is refused: this server is one account, and no monitoring one.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
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
    InvalidNextToken,
    InvalidParameterCombination,
    InvalidParameterValue,
    MissingParameter,
)
from polyhost.metrics.alarms import SUPPORT as ALARM_SUPPORT
from polyhost.metrics.alarms import AlarmService
from polyhost.metrics.cloudwatch_values import Timestamp as Timestamp  # re-exported: the protocols
from polyhost.metrics.cloudwatch_values import canonical_namespace
from polyhost.metrics.cloudwatch_values import check_period as _check_period
from polyhost.metrics.cloudwatch_values import percentile as _percentile
from polyhost.metrics.query import Datapoint, MetricId, MetricsReader
from polyhost.tokens import TokenCodec

Params = Mapping[str, Any]
Answer = dict[str, Any]

LIST_PAGE = 500
MAX_DATAPOINTS_STATISTICS = 1440
MAX_DATAPOINTS_DATA = 100_800
MAX_QUERIES = 500
RECENT_S = 3 * 3600
STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
_QUERY_ID = re.compile(r"[a-z][a-zA-Z0-9_]*")
_STAT_VALUES: dict[str, Callable[[Datapoint], float]] = {
    "SampleCount": lambda p: p.sample_count,
    "Average": lambda p: p.average,
    "Sum": lambda p: p.sum,
    "Minimum": lambda p: p.minimum,
    "Maximum": lambda p: p.maximum,
}


def _bad_list_token(token: str) -> InvalidParameterValue:
    return InvalidParameterValue(
        "The NextToken is not valid: pass the NextToken of the previous ListMetrics answer "
        "unchanged."
    )


def _bad_data_token(token: str) -> InvalidNextToken:
    return InvalidNextToken(
        "The NextToken is not valid: pass the NextToken of the previous GetMetricData answer "
        "unchanged."
    )


# No prefix, as CloudWatch's tokens always were: bare base64url of the payload.
_LIST_TOKEN = TokenCodec("", _bad_list_token)
_DATA_TOKEN = TokenCodec("", _bad_data_token)


def _aligned_start(start: float, period: int) -> int:
    """CloudWatch rounds StartTime down: to the minute for periods of a minute or more, else
    to a multiple of the period."""
    step = 60 if period % 60 == 0 else period
    return int(math.floor(start / step) * step)


def _check_range(params: Params) -> tuple[float, float]:
    start, end = float(params["StartTime"]), float(params["EndTime"])
    if start >= end:
        raise InvalidParameterValue(
            "The parameter StartTime must be less than the parameter EndTime."
        )
    return start, end


def _metric_id(namespace: str, name: str, raw_dimensions: Sequence[Params], where: str) -> MetricId:
    pairs: dict[str, str] = {}
    for dimension in raw_dimensions:
        dim_name = dimension["Name"]
        if dim_name in pairs:
            raise InvalidParameterValue(
                f"The dimension {dim_name} appears twice in {where}: give each dimension once."
            )
        pairs[dim_name] = dimension["Value"]
    return MetricId(canonical_namespace(namespace), name, tuple(sorted(pairs.items())))


@dataclass(frozen=True, slots=True)
class _Query:
    id: str
    label: str
    metric: MetricId
    period: int
    stat: str
    percent: float | None
    unit: str | None


_DIMENSIONS: dict[str, Support] = {
    "Dimensions": honoured("the metric's dimensions, each given once"),
    "Dimensions[].Name": honoured("a dimension's name"),
    "Dimensions[].Value": honoured("its value"),
}
_STAT_METRIC = "MetricDataQueries[].MetricStat.Metric"
_CROSS_ACCOUNT = refused("cross-account observability (this server is one account)")

SUPPORT: dict[str, OperationTable] = {
    "ListMetrics": {
        "Namespace": honoured(
            "metrics of that namespace (aws/sagemaker/Endpoints finds the slashed one too)"
        ),
        "MetricName": honoured("metrics of that name"),
        "Dimensions": honoured("metrics that have each dimension named"),
        "Dimensions[].Name": honoured("a dimension the metric must have"),
        "Dimensions[].Value": honoured("the value it must have (absent: any)"),
        "NextToken": honoured("continues the listing where the previous page ended"),
        "RecentlyActive": honoured("PT3H: metrics with data in the last 3 hours"),
        "IncludeLinkedAccounts": honoured(
            "this server is no monitoring account and has no linked accounts: the answer is "
            "the account's own metrics, as CloudWatch answers outside a monitoring account"
        ),
        "OwningAccount": _CROSS_ACCOUNT,
    },
    "GetMetricStatistics": {
        "Namespace": honoured("the metric's namespace"),
        "MetricName": honoured("the metric's name"),
        **_DIMENSIONS,
        "StartTime": honoured("the first period's start, rounded down as CloudWatch does"),
        "EndTime": honoured("the end of the range (exclusive)"),
        "Period": honoured("10, 20, 30 or a multiple of 60 seconds"),
        "Statistics": honoured("SampleCount, Average, Sum, Minimum, Maximum"),
        "ExtendedStatistics": honoured("percentiles p0 to p100"),
        "Unit": honoured("a unit that is not the metric's selects nothing"),
    },
    "GetMetricData": {
        "MetricDataQueries": honoured("1 to 500 queries"),
        "MetricDataQueries[].Id": honoured("the query's id in the answer"),
        "MetricDataQueries[].MetricStat": honoured("the metric and statistic queried"),
        _STAT_METRIC: honoured("the metric"),
        f"{_STAT_METRIC}.Namespace": honoured("its namespace"),
        f"{_STAT_METRIC}.MetricName": honoured("its name"),
        f"{_STAT_METRIC}.Dimensions": honoured("its dimensions, each given once"),
        f"{_STAT_METRIC}.Dimensions[].Name": honoured("a dimension's name"),
        f"{_STAT_METRIC}.Dimensions[].Value": honoured("its value"),
        "MetricDataQueries[].MetricStat.Period": honoured("10, 20, 30 or a multiple of 60"),
        "MetricDataQueries[].MetricStat.Stat": honoured("a statistic or a percentile"),
        "MetricDataQueries[].MetricStat.Unit": honoured("a unit not the metric's: no data"),
        "MetricDataQueries[].Expression": refused(
            "metric math and Metrics Insights queries", own_message=True
        ),
        "MetricDataQueries[].Label": honoured(
            "the series' label, literal (dynamic labels, ${...}, are refused)"
        ),
        "MetricDataQueries[].ReturnData": honoured("false leaves the query out of the answer"),
        "MetricDataQueries[].Period": refused(
            "a query's own Period, which goes with an Expression (give MetricStat.Period)"
        ),
        "MetricDataQueries[].AccountId": _CROSS_ACCOUNT,
        "StartTime": honoured("the first period's start, rounded down as CloudWatch does"),
        "EndTime": honoured("the end of the range (exclusive)"),
        "NextToken": honoured("continues the answer where the previous page ended"),
        "ScanBy": honoured("newest or oldest datapoints first"),
        "MaxDatapoints": honoured("datapoints per answer, across its queries"),
        "LabelOptions": honoured("options for dynamic labels"),
        "LabelOptions.Timezone": honoured(
            "it shifts the times dynamic labels show; the labels answered here are literal "
            "(dynamic ones are refused), so it changes nothing, as on CloudWatch"
        ),
    },
    **ALARM_SUPPORT,  # the alarm operations' table, kept beside them (metrics/alarms.py)
}


class CloudWatchApi:
    """`call(operation, params)` for CloudWatch's three read operations, and its alarm
    operations when given the `alarms` service (which has their semantics)."""

    READ_OPERATIONS = ("ListMetrics", "GetMetricStatistics", "GetMetricData")
    OPERATIONS = (*READ_OPERATIONS, *AlarmService.OPERATIONS)

    def __init__(
        self,
        reader: MetricsReader,
        clock: Callable[[], float] = time.time,
        unit_of: Callable[[MetricId], str | None] | None = None,
        alarms: AlarmService | None = None,
    ) -> None:
        self._reader = reader
        self._clock = clock
        self._unit_of = unit_of or getattr(reader, "unit_of", None)
        self._alarms = alarms

    @property
    def operations(self) -> tuple[str, ...]:
        """What this instance serves: the read operations, and the alarms' with a service."""
        return self.OPERATIONS if self._alarms is not None else self.READ_OPERATIONS

    def call(self, operation: str, params: Params) -> Answer:
        if operation in AlarmService.OPERATIONS:
            if self._alarms is None:
                raise InvalidParameterValue(
                    f"This server keeps no alarms (it runs without a metric history), so "
                    f"{operation} is not served: start it with --metrics-history."
                )
            return self._alarms.call(operation, params)
        handler: Callable[[Params], Answer] = {
            "ListMetrics": self.list_metrics,
            "GetMetricStatistics": self.get_metric_statistics,
            "GetMetricData": self.get_metric_data,
        }[operation]
        found = refusals(SUPPORT[operation], params)
        if found:
            raise InvalidParameterValue(refusal_message(operation, found))
        return handler(params)

    # -- ListMetrics ---------------------------------------------------------------------------
    def list_metrics(self, params: Params) -> Answer:
        namespace = params.get("Namespace")
        if namespace is not None:
            namespace = canonical_namespace(namespace)
        name = params.get("MetricName")
        filters = [(f["Name"], f.get("Value")) for f in params.get("Dimensions", ())]
        recent = params.get("RecentlyActive") == "PT3H"
        after = self._list_token(params.get("NextToken"))
        since = self._clock() - RECENT_S if recent else -math.inf
        chosen: list[MetricId] = []
        for metric, last_seen in self._reader.list_metrics():
            if namespace is not None and metric.namespace != namespace:
                continue
            if name is not None and metric.name != name:
                continue
            if last_seen < since:
                continue
            if any(
                metric.dimension(f_name) is None
                or (f_value is not None and metric.dimension(f_name) != f_value)
                for f_name, f_value in filters
            ):
                continue
            if after is not None and _sort_key(metric) <= after:
                continue
            chosen.append(metric)
        chosen.sort(key=_sort_key)
        page = chosen[:LIST_PAGE]
        answer: Answer = {
            "Metrics": [
                {
                    "Namespace": m.namespace,
                    "MetricName": m.name,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in m.dimensions],
                }
                for m in page
            ]
        }
        if len(chosen) > LIST_PAGE:
            last = page[-1]
            answer["NextToken"] = _LIST_TOKEN.encode(
                {"after": [last.namespace, last.name, [list(d) for d in last.dimensions]]}
            )
        return answer

    @staticmethod
    def _list_token(token: str | None) -> tuple[Any, ...] | None:
        if token is None:
            return None
        after = _LIST_TOKEN.decode(token).get("after")
        if not isinstance(after, list) or len(after) != 3:
            raise _bad_list_token(token)
        namespace, name, dims = after
        if (
            not isinstance(namespace, str)
            or not isinstance(name, str)
            or not isinstance(dims, list)
            or not all(
                isinstance(d, list) and len(d) == 2 and all(isinstance(p, str) for p in d)
                for d in dims
            )
        ):
            raise _bad_list_token(token)
        return (namespace, name, tuple((k, v) for k, v in dims))

    # -- GetMetricStatistics -------------------------------------------------------------------
    def get_metric_statistics(self, params: Params) -> Answer:
        statistics: list[str] = list(params.get("Statistics") or ())
        extended: list[str] = list(params.get("ExtendedStatistics") or ())
        if not statistics and not extended:
            raise InvalidParameterCombination(
                "Must specify either Statistics or ExtendedStatistics: e.g. Statistics=[Sum] "
                "or ExtendedStatistics=[p99]."
            )
        if statistics and extended:
            raise InvalidParameterCombination(
                "Specify Statistics or ExtendedStatistics, not both: make one call for each."
            )
        percents = {
            name: _percentile(name, f"ExtendedStatistics.member.{i}")
            for i, name in enumerate(extended, 1)
        }
        period = int(params["Period"])
        _check_period(period, "Period")
        start, end = _check_range(params)
        start = _aligned_start(start, period)
        wanted = math.ceil((end - start) / period)
        if wanted > MAX_DATAPOINTS_STATISTICS:
            raise InvalidParameterCombination(
                f"You have requested up to {wanted:,} datapoints, which exceeds the limit of "
                f"{MAX_DATAPOINTS_STATISTICS:,}. You may reduce the datapoints requested by "
                "increasing Period, or decreasing the time range."
            )
        metric = _metric_id(
            params["Namespace"], params["MetricName"], params.get("Dimensions", ()), "Dimensions"
        )
        answer: Answer = {"Label": metric.name, "Datapoints": []}
        if not self._unit_matches(metric, params.get("Unit")):
            return answer
        points = self._reader.statistics(
            metric, start, end, period, tuple(sorted(set(percents.values())))
        )
        for point in points:
            shown: dict[str, Any] = {"Timestamp": Timestamp(point.timestamp)}
            for name in STATISTICS:
                if name in statistics:
                    shown[name] = _STAT_VALUES[name](point)
            shown["Unit"] = point.unit
            if percents:
                shown["ExtendedStatistics"] = {
                    name: point.percentiles[percent] for name, percent in percents.items()
                }
            answer["Datapoints"].append(shown)
        return answer

    def _unit_matches(self, metric: MetricId, unit: str | None) -> bool:
        """A Unit that is not the metric's selects nothing (CloudWatch converts no units)."""
        if unit is None or self._unit_of is None:
            return True
        known = self._unit_of(metric)
        return known is None or known == unit

    # -- GetMetricData -------------------------------------------------------------------------
    def get_metric_data(self, params: Params) -> Answer:
        raw_queries: Sequence[Params] = params["MetricDataQueries"]
        if not 1 <= len(raw_queries) <= MAX_QUERIES:
            raise InvalidParameterValue(
                f"MetricDataQueries must hold 1 to {MAX_QUERIES} queries, not {len(raw_queries)}."
            )
        start, end = _check_range(params)
        scan = params.get("ScanBy", "TimestampDescending")
        limit = params.get("MaxDatapoints", MAX_DATAPOINTS_DATA)
        if limit < 1:
            raise InvalidParameterValue(
                f"The parameter MaxDatapoints must be at least 1, not {limit}."
            )
        queries = self._queries(raw_queries)
        fingerprint = _fingerprint(params)
        offset = self._data_token(params.get("NextToken"), fingerprint)
        series: list[tuple[_Query, list[tuple[float, float]]]] = []
        for query in queries:
            points = self._series(query, start, end)
            if scan == "TimestampDescending":
                points.reverse()
            series.append((query, points))
        total = sum(len(points) for _, points in series)
        results: list[dict[str, Any]] = []
        position = 0
        for query, points in series:
            first = min(max(offset - position, 0), len(points))
            stop = min(max(offset + limit - position, 0), len(points))
            position += len(points)
            chunk = points[first:stop]
            results.append(
                {
                    "Id": query.id,
                    "Label": query.label,
                    "Timestamps": [Timestamp(t) for t, _ in chunk],
                    "Values": [v for _, v in chunk],
                    "StatusCode": "PartialData" if stop < len(points) else "Complete",
                }
            )
        answer: Answer = {"MetricDataResults": results, "Messages": []}
        if offset + limit < total:
            answer["NextToken"] = _DATA_TOKEN.encode(
                {"offset": offset + limit, "request": fingerprint}
            )
        return answer

    def _queries(self, raw_queries: Sequence[Params]) -> list[_Query]:
        queries: list[_Query] = []
        ids: set[str] = set()
        for index, raw in enumerate(raw_queries, 1):
            where = f"MetricDataQueries.member.{index}"
            query_id = raw["Id"]
            if _QUERY_ID.fullmatch(query_id) is None:
                raise InvalidParameterValue(
                    f"The value {query_id[:64]} for parameter {where}.Id is invalid: an Id must "
                    "start with a lowercase letter and hold only letters, digits and "
                    "underscores."
                )
            if query_id in ids:
                raise InvalidParameterValue(
                    f"The Id {query_id} is used by more than one query: every query of "
                    "MetricDataQueries needs its own Id."
                )
            ids.add(query_id)
            stat_params = raw.get("MetricStat")
            if raw.get("Expression") is not None:
                if stat_params is not None:
                    raise InvalidParameterCombination(
                        f"{where} has both MetricStat and Expression: give exactly one."
                    )
                raise InvalidParameterValue(
                    f"{where} (Id {query_id}) has an Expression: polyhost does not evaluate "
                    "metric math or Metrics Insights queries. Give a MetricStat instead and "
                    "compute on the values it returns."
                )
            if stat_params is None:
                raise MissingParameter(
                    f"The parameter {where}.MetricStat is required: every query needs one."
                )
            metric_params = stat_params["Metric"]
            for member in ("Namespace", "MetricName"):
                if metric_params.get(member) is None:
                    raise MissingParameter(
                        f"The parameter {where}.MetricStat.Metric.{member} is required."
                    )
            metric = _metric_id(
                metric_params["Namespace"],
                metric_params["MetricName"],
                metric_params.get("Dimensions", ()),
                f"{where}.MetricStat.Metric.Dimensions",
            )
            period = int(stat_params["Period"])
            _check_period(period, f"{where}.MetricStat.Period")
            stat = stat_params["Stat"]
            percent = None if stat in STATISTICS else _percentile(stat, f"{where}.MetricStat.Stat")
            label = raw.get("Label")
            if label is not None and "${" in label:
                raise InvalidParameterValue(
                    f"polyhost does not support dynamic labels yet: {where}.Label "
                    f"'{label[:64]}' has ${{...}}; give a literal label, or see "
                    "docs/unsupported.md"
                )
            if not raw.get("ReturnData", True):
                continue  # nothing would use it: polyhost evaluates no expressions
            queries.append(
                _Query(
                    id=query_id,
                    label=raw.get("Label") or metric.name,
                    metric=metric,
                    period=period,
                    stat=stat,
                    percent=percent,
                    unit=stat_params.get("Unit"),
                )
            )
        return queries

    def _series(self, query: _Query, start: float, end: float) -> list[tuple[float, float]]:
        """(timestamp, value) of one query, oldest first."""
        if not self._unit_matches(query.metric, query.unit):
            return []
        aligned = _aligned_start(start, query.period)
        percents = () if query.percent is None else (query.percent,)
        points = self._reader.statistics(query.metric, aligned, end, query.period, percents)
        if query.percent is not None:
            percent = query.percent
            return [(p.timestamp, p.percentiles[percent]) for p in points]
        value = _STAT_VALUES[query.stat]
        return [(p.timestamp, value(p)) for p in points]

    @staticmethod
    def _data_token(token: str | None, fingerprint: str) -> int:
        if token is None:
            return 0
        payload = _DATA_TOKEN.decode(token)
        offset, request = payload.get("offset"), payload.get("request")
        if not isinstance(offset, int) or isinstance(offset, bool) or not isinstance(request, str):
            raise _bad_data_token(token)
        if request != fingerprint or offset < 0:
            raise InvalidNextToken(
                "The NextToken belongs to a different request: repeat the same queries, time "
                "range, ScanBy and MaxDatapoints with it."
            )
        return offset


def _sort_key(metric: MetricId) -> tuple[Any, ...]:
    return (metric.namespace, metric.name, metric.dimensions)


def _fingerprint(params: Params) -> str:
    """What a GetMetricData NextToken must be used with: the request without the token."""
    rest = {k: v for k, v in params.items() if k != "NextToken"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:24]
