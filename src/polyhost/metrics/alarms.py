"""CloudWatch metric alarms on polyhost's own metrics: the API (PutMetricAlarm, DescribeAlarms,
DescribeAlarmsForMetric, DeleteAlarms, SetAlarmState, DescribeAlarmHistory, Enable/Disable
AlarmActions) and the evaluator that moves alarms between OK, ALARM and INSUFFICIENT_DATA.

The wire adapter (`http/services/cloudwatch.py`) has decoded and model-checked the request,
as for the read API (`metrics/cloudwatch_api.py`, which hands the alarm operations here);
this module checks what the model cannot say: the statistic, the period, the evaluation
window's length, DatapointsToAlarm against EvaluationPeriods, the action ARNs.

Alarms live in `alarms.db` in the state dir (`alarm_store.py`) and survive a restart with their
state. `AlarmService.run` evaluates every alarm each `interval_s` (a setting, 10 s by default,
so a 10-second alarm is judged on every new slot) in a worker thread: `alarm_eval.evaluate`
reads the evaluation range from the metric history and decides the state; a change is stored
with a StateUpdate history item, and the actions of the new state run (`alarm_actions.py`) in
a small pool of their own, so a slow SNS endpoint never delays the next evaluation.

`time_scale` (the server's `--autoscaling-time-scale`) makes an evaluated minute last 60/N
real seconds: each alarm's Period is read as Period/N seconds of history, rounded up to whole
10-second slots, so a demo or a test watches a 3-minute scale-out in 30 seconds. Actions whose
handler repeats (scaling policies) run again once per period while the alarm stays in its
state, as CloudWatch re-invokes scaling actions.

Single-metric alarms with a static threshold only: metric math (`Metrics`), anomaly detection
bands and the newer PromQL, evaluation-window and warm-up options are refused, naming what to
do instead (`SUPPORT`; docs/alarms.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, ClassVar

from polyhost.awsmodel.support import (
    OperationTable,
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
    ServiceError,
)
from polyhost.metrics.alarm_actions import (
    SNS_PREFIX,
    ActionHandlers,
    AlarmEvent,
    SnsPublisher,
    failure_text,
    notification,
)
from polyhost.metrics.alarm_eval import (
    ALARM,
    COMPARISONS,
    INSUFFICIENT_DATA,
    OK,
    AlarmRule,
    Outcome,
    evaluate,
    evaluation_range,
    wire_time,
)
from polyhost.metrics.alarm_store import AlarmStore, HistoryItem, StoredAlarm
from polyhost.metrics.cloudwatch_values import (
    Timestamp,
    canonical_namespace,
    check_period,
    percentile,
)
from polyhost.metrics.query import MetricId, MetricsReader
from polyhost.tokens import TokenCodec

log = logging.getLogger("polyhost.metrics")

Params = Mapping[str, Any]
Answer = dict[str, Any]

MIN_INTERVAL_S = 0.05  # an interval of 0 would spin a core
MAX_TIME_SCALE = 6.0  # a minute of 10 s: the finest the 10-second history can show
MAX_ALARMS = 10_000  # CloudWatch's default quota of alarms per account and region
DESCRIBE_PAGE = 50
HISTORY_PAGE = 100
CREATED_REASON = "Unchecked: Initial alarm creation"
TREAT_MISSING = ("missing", "ignore", "breaching", "notBreaching")
BAND_OPERATORS = (
    "LessThanLowerOrGreaterThanUpperThreshold",
    "LessThanLowerThreshold",
    "GreaterThanUpperThreshold",
)
OPERATIONS = (
    "PutMetricAlarm",
    "DescribeAlarms",
    "DescribeAlarmsForMetric",
    "DeleteAlarms",
    "SetAlarmState",
    "DescribeAlarmHistory",
    "EnableAlarmActions",
    "DisableAlarmActions",
)


class ResourceNotFound(ServiceError):
    """CloudWatch's ResourceNotFound (404), not SageMaker's (400)."""

    code = "ResourceNotFound"
    status = 404


class LimitExceeded(ServiceError):
    code = "LimitExceeded"
    status = 400


class InvalidFormat(ServiceError):
    code = "InvalidFormat"
    status = 400


def _bad_token(operation: str) -> Callable[[str], InvalidNextToken]:
    def error(token: str) -> InvalidNextToken:
        return InvalidNextToken(
            f"The NextToken is not valid: pass the NextToken of the previous {operation} answer "
            "unchanged."
        )

    return error


_DESCRIBE_TOKEN = TokenCodec("", _bad_token("DescribeAlarms"))
_HISTORY_TOKEN = TokenCodec("", _bad_token("DescribeAlarmHistory"))

_METRIC_MATH = "metric math alarms"
_NOT_COMPOSITE = "composite alarms (polyhost has metric alarms only)"
_ALARM_TYPES = honoured(
    "MetricAlarm selects the metric alarms; CompositeAlarm and LogAlarm select none (neither "
    "can be created here)"
)

SUPPORT: dict[str, OperationTable] = {
    "PutMetricAlarm": {
        "AlarmName": honoured("the alarm's name; putting an existing name replaces its definition"),
        "AlarmDescription": honoured("shown by DescribeAlarms and in notifications"),
        "ActionsEnabled": honoured("false: state changes run no actions"),
        "OKActions": honoured("SNS topics notified on entering OK"),
        "AlarmActions": honoured("SNS topics notified on entering ALARM"),
        "InsufficientDataActions": honoured("SNS topics notified on entering INSUFFICIENT_DATA"),
        "MetricName": honoured("the metric watched"),
        "Namespace": honoured("its namespace (aws/sagemaker/Endpoints finds the slashed one)"),
        "Statistic": honoured("SampleCount, Average, Sum, Minimum or Maximum of each period"),
        "ExtendedStatistic": honoured("a percentile of each period, p0 to p100"),
        "Dimensions": honoured("the metric's dimensions, each given once"),
        "Dimensions[].Name": honoured("a dimension's name"),
        "Dimensions[].Value": honoured("its value"),
        "Period": honoured("10, 20, 30 or a multiple of 60 seconds"),
        "Unit": honoured("a unit that is not the metric's finds no data"),
        "EvaluationPeriods": honoured("the periods of the evaluation range"),
        "DatapointsToAlarm": honoured("breaching datapoints of the range that make ALARM (M of N)"),
        "Threshold": honoured("the static threshold"),
        "ComparisonOperator": honoured(
            "the four static comparisons; the anomaly-band ones are refused"
        ),
        "TreatMissingData": honoured("missing, ignore, breaching or notBreaching"),
        "EvaluateLowSampleCountPercentile": refused(
            "ignoring percentiles of low sample counts", accepts=("evaluate",)
        ),
        "Metrics": refused(_METRIC_MATH, own_message=True),
        "Tags": refused("alarm tags (CloudWatch's tag operations are not served)"),
        "ThresholdMetricId": refused("anomaly detection threshold alarms"),
        "EvaluationWindow": refused("wall-clock and sliding evaluation windows"),
        "WarmUpConfiguration": refused("alarm warm-up periods"),
        "EvaluationCriteria": refused("PromQL alarm criteria"),
        "EvaluationInterval": refused(
            "a custom evaluation interval (polyhost evaluates every alarm on its own interval)"
        ),
        "ActionConfiguration": refused("alarm tag propagation to actions"),
    },
    "DescribeAlarms": {
        "AlarmNames": honoured("the alarms of these names"),
        "AlarmNamePrefix": honoured("the alarms whose name starts so"),
        "AlarmTypes": _ALARM_TYPES,
        "ChildrenOfAlarmName": refused(_NOT_COMPOSITE),
        "ParentsOfAlarmName": refused(_NOT_COMPOSITE),
        "StateValue": honoured("the alarms in that state"),
        "ActionPrefix": honoured("the alarms with an action starting so"),
        "MaxRecords": honoured("alarms per page, 1 to 100 (50 by default)"),
        "NextToken": honoured("continues where the previous page ended"),
    },
    "DescribeAlarmsForMetric": {
        "MetricName": honoured("the alarms on this metric"),
        "Namespace": honoured("of this namespace"),
        "Statistic": honoured("with this statistic"),
        "ExtendedStatistic": honoured("with this percentile"),
        "Dimensions": honoured("with exactly these dimensions"),
        "Dimensions[].Name": honoured("a dimension's name"),
        "Dimensions[].Value": honoured("its value"),
        "Period": honoured("with this period"),
        "Unit": honoured("with this unit"),
    },
    "DeleteAlarms": {"AlarmNames": honoured("the alarms deleted (all exist, or none is)")},
    "SetAlarmState": {
        "AlarmName": honoured("the alarm"),
        "StateValue": honoured("its new state, until the next evaluation"),
        "StateReason": honoured("the reason shown"),
        "StateReasonData": honoured("the reason's data, JSON"),
    },
    "DescribeAlarmHistory": {
        "AlarmName": honoured("one alarm's history (absent: every alarm's)"),
        "AlarmContributorId": refused("alarm contributors (PromQL alarms)"),
        "AlarmTypes": _ALARM_TYPES,
        "HistoryItemType": honoured("ConfigurationUpdate, StateUpdate or Action items"),
        "StartDate": honoured("items from this time"),
        "EndDate": honoured("items up to this time"),
        "MaxRecords": honoured("items per page, 1 to 100"),
        "NextToken": honoured("continues where the previous page ended"),
        "ScanBy": honoured("newest (default) or oldest first"),
    },
    "EnableAlarmActions": {"AlarmNames": honoured("alarms whose actions run again")},
    "DisableAlarmActions": {"AlarmNames": honoured("alarms whose actions stop running")},
}


def alarm_arn(region: str, account_id: str, name: str) -> str:
    return f"arn:aws:cloudwatch:{region}:{account_id}:alarm:{name}"


def _metric_id(definition: Mapping[str, Any]) -> MetricId:
    pairs = tuple(sorted((d["Name"], d["Value"]) for d in definition.get("Dimensions", ())))
    return MetricId(canonical_namespace(definition["Namespace"]), definition["MetricName"], pairs)


SLOT_S = 10  # the metric history's resolution: no period is read finer than one slot


def scaled(rule: AlarmRule, time_scale: float) -> AlarmRule:
    """`rule` with its period in real seconds when an evaluated minute lasts 60/N seconds:
    Period/N, rounded up to whole history slots (a 10-second alarm stays 10 seconds)."""
    if time_scale == 1.0:
        return rule
    slots = max(1, math.ceil(rule.period / time_scale / SLOT_S - 1e-9))
    return replace(rule, period=slots * SLOT_S)


def rule_of(definition: Mapping[str, Any]) -> AlarmRule:
    """How the evaluator reads an alarm's (validated) definition."""
    extended = definition.get("ExtendedStatistic")
    return AlarmRule(
        metric=_metric_id(definition),
        statistic=definition.get("Statistic"),
        percent=None if extended is None else float(extended[1:]),
        extended=extended,
        unit=definition.get("Unit"),
        period=int(definition["Period"]),
        evaluation_periods=int(definition["EvaluationPeriods"]),
        datapoints_to_alarm=int(
            definition.get("DatapointsToAlarm") or definition["EvaluationPeriods"]
        ),
        threshold=float(definition["Threshold"]),
        comparison=definition["ComparisonOperator"],
        treat_missing=definition.get("TreatMissingData") or "missing",
    )


_ACTION_LISTS = {
    OK: "OKActions",
    ALARM: "AlarmActions",
    INSUFFICIENT_DATA: "InsufficientDataActions",
}


class AlarmService:
    """The alarm operations and their evaluation, over one store and the metric history."""

    OPERATIONS: ClassVar[tuple[str, ...]] = OPERATIONS

    def __init__(
        self,
        store: AlarmStore,
        reader: MetricsReader,
        *,
        region: str,
        account_id: str,
        interval_s: float = 10.0,
        handlers: ActionHandlers | None = None,
        clock: Callable[[], float] = time.time,
        unit_of: Callable[[MetricId], str | None] | None = None,
        time_scale: float = 1.0,
    ) -> None:
        if not 1.0 <= time_scale <= MAX_TIME_SCALE:
            raise ValueError(f"time_scale must be within 1 and {MAX_TIME_SCALE}: {time_scale}")
        self.time_scale = time_scale
        # Per alarm, the end of the evaluation range its repeating actions last ran for: they
        # run again only when a new period has ended while the alarm stayed in its state.
        self._repeated: dict[str, float] = {}
        self._store = store
        self._reader = reader
        self._region = region
        self._account_id = account_id
        self.interval_s = interval_s
        self._clock = clock
        self._unit_of = unit_of or getattr(reader, "unit_of", None)
        self.handlers = handlers or ActionHandlers()
        if self.handlers.find(SNS_PREFIX) is None:
            self.handlers.register(SNS_PREFIX, SnsPublisher(region))
        # Evaluation and the API both change states: one at a time, so a SetAlarmState is never
        # lost under an evaluation that read the state before it.
        self._state_lock = threading.Lock()
        self._actions = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alarm-actions")
        # Held by an evaluation; `close` takes it, so the store never closes under one.
        self._evaluating = threading.Lock()
        self._closed = False

    # -- the API ---------------------------------------------------------------------------------
    def call(self, operation: str, params: Params) -> Answer:
        found = refusals(SUPPORT[operation], params)
        if found:
            raise InvalidParameterValue(refusal_message(operation, found))
        handler: Callable[[Params], Answer] = {
            "PutMetricAlarm": self.put_metric_alarm,
            "DescribeAlarms": self.describe_alarms,
            "DescribeAlarmsForMetric": self.describe_alarms_for_metric,
            "DeleteAlarms": self.delete_alarms,
            "SetAlarmState": self.set_alarm_state,
            "DescribeAlarmHistory": self.describe_alarm_history,
            "EnableAlarmActions": lambda p: self._enable(p, True),
            "DisableAlarmActions": lambda p: self._enable(p, False),
        }[operation]
        return handler(params)

    def put_metric_alarm(self, params: Params) -> Answer:
        definition = self._validated(params)
        name = definition["AlarmName"]
        now = self._clock()
        with self._state_lock:
            existing = self._store.get(name)
            if existing is None and self._store.count() >= MAX_ALARMS:
                raise LimitExceeded(
                    f"The maximum number of alarms ({MAX_ALARMS}) has been reached: delete "
                    "alarms you no longer need (DeleteAlarms) before putting new ones."
                )
            alarm = StoredAlarm(
                name=name,
                definition=definition,
                configured=now,
                actions_enabled=bool(params.get("ActionsEnabled", True)),
                # A replaced definition keeps its state until the next evaluation.
                state=INSUFFICIENT_DATA if existing is None else existing.state,
                reason=CREATED_REASON if existing is None else existing.reason,
                reason_data=None if existing is None else existing.reason_data,
                state_updated=now if existing is None else existing.state_updated,
                state_transitioned=now if existing is None else existing.state_transitioned,
            )
            verb = "created" if existing is None else "updated"
            shown = self._shown(alarm)
            history = HistoryItem(
                0,
                name,
                now,
                "ConfigurationUpdate",
                f'Alarm "{name}" {verb}',
                json.dumps(
                    {
                        "version": "1.0",
                        "type": "Create" if existing is None else "Update",
                        "createdAlarm" if existing is None else "updatedAlarm": _json_alarm(shown),
                    },
                    separators=(",", ":"),
                ),
            )
            self._store.put(alarm, history)
        return {}

    def _validated(self, params: Params) -> dict[str, Any]:
        """PutMetricAlarm's members checked beyond the model: the definition stored."""
        if params.get("Metrics"):
            raise InvalidParameterValue(
                "polyhost does not evaluate metric math alarms yet: give MetricName, Namespace, "
                "Statistic (or ExtendedStatistic) and Period instead of Metrics, or see "
                "docs/alarms.md."
            )
        for member in ("MetricName", "Namespace", "Period", "EvaluationPeriods", "Threshold",
                       "ComparisonOperator"):  # fmt: skip
            if params.get(member) is None:
                raise MissingParameter(
                    f"The parameter {member} is required for an alarm on a single metric with "
                    "a static threshold."
                )
        statistic, extended = params.get("Statistic"), params.get("ExtendedStatistic")
        if statistic is not None and extended is not None:
            raise InvalidParameterCombination(
                "Statistic and ExtendedStatistic cannot both be given: give one of them."
            )
        if statistic is None and extended is None:
            raise MissingParameter(
                "The parameter Statistic or ExtendedStatistic is required: e.g. Statistic=Sum or "
                "ExtendedStatistic=p99."
            )
        if extended is not None:
            percentile(extended, "ExtendedStatistic")
        elif params.get("EvaluateLowSampleCountPercentile") is not None:
            raise InvalidParameterCombination(
                "EvaluateLowSampleCountPercentile goes with ExtendedStatistic, not Statistic."
            )
        if not math.isfinite(float(params["Threshold"])):
            raise InvalidParameterValue(
                f"The parameter Threshold must be a finite number, not {params['Threshold']}."
            )
        operator = params["ComparisonOperator"]
        if operator in BAND_OPERATORS:
            raise InvalidParameterValue(
                f"The ComparisonOperator {operator} compares with an anomaly detection band, "
                "which polyhost does not build: use GreaterThanOrEqualToThreshold, "
                "GreaterThanThreshold, LessThanThreshold or LessThanOrEqualToThreshold with a "
                "static Threshold (docs/alarms.md)."
            )
        assert operator in COMPARISONS  # the model's enum has checked it
        period = int(params["Period"])
        check_period(period, "Period")
        periods = int(params["EvaluationPeriods"])
        window = period * periods
        limit = 86_400 if period < 3600 else 604_800
        if window > limit:
            span = "one day, for periods under an hour" if limit == 86_400 else "seven days"
            raise InvalidParameterValue(
                f"Period * EvaluationPeriods is {window} seconds: an alarm's evaluation range "
                f"may be at most {limit} seconds ({span})."
            )
        to_alarm = params.get("DatapointsToAlarm")
        if to_alarm is not None and int(to_alarm) > periods:
            raise InvalidParameterValue(
                f"DatapointsToAlarm ({to_alarm}) must be less than or equal to EvaluationPeriods "
                f"({periods})."
            )
        treat = params.get("TreatMissingData")
        if treat is not None and treat not in TREAT_MISSING:
            raise InvalidParameterValue(
                f"The value {treat[:64]} for parameter TreatMissingData is not valid: it must be "
                f"one of {', '.join(TREAT_MISSING)}."
            )
        for member in ("OKActions", "AlarmActions", "InsufficientDataActions"):
            for index, arn in enumerate(params.get(member) or (), 1):
                why = self.handlers.why_not(arn)
                if why is not None:
                    raise InvalidParameterValue(f"{member}.member.{index}: {why}")
        names = [d["Name"] for d in params.get("Dimensions") or ()]
        if len(set(names)) != len(names):
            raise InvalidParameterValue(
                "A dimension appears twice in Dimensions: give each dimension once."
            )
        keep = (
            "AlarmName",
            "AlarmDescription",
            "OKActions",
            "AlarmActions",
            "InsufficientDataActions",
            "MetricName",
            "Namespace",
            "Statistic",
            "ExtendedStatistic",
            "Dimensions",
            "Period",
            "Unit",
            "EvaluationPeriods",
            "DatapointsToAlarm",
            "Threshold",
            "ComparisonOperator",
            "TreatMissingData",
            "EvaluateLowSampleCountPercentile",
        )
        return {key: params[key] for key in keep if params.get(key) is not None}

    def _shown(self, alarm: StoredAlarm) -> Answer:
        """The alarm as DescribeAlarms' MetricAlarm shows it."""
        d = alarm.definition
        shown: Answer = {
            "AlarmName": alarm.name,
            "AlarmArn": alarm_arn(self._region, self._account_id, alarm.name),
        }
        if "AlarmDescription" in d:
            shown["AlarmDescription"] = d["AlarmDescription"]
        shown.update(
            {
                "AlarmConfigurationUpdatedTimestamp": Timestamp(alarm.configured),
                "ActionsEnabled": alarm.actions_enabled,
                "OKActions": list(d.get("OKActions", [])),
                "AlarmActions": list(d.get("AlarmActions", [])),
                "InsufficientDataActions": list(d.get("InsufficientDataActions", [])),
                "StateValue": alarm.state,
                "StateReason": alarm.reason,
            }
        )
        if alarm.reason_data is not None:
            shown["StateReasonData"] = alarm.reason_data
        shown["StateUpdatedTimestamp"] = Timestamp(alarm.state_updated)
        for key in ("MetricName", "Namespace", "Statistic", "ExtendedStatistic"):
            if key in d:
                shown[key] = d[key]
        shown["Dimensions"] = [dict(x) for x in d.get("Dimensions", [])]
        for key in ("Period", "Unit", "EvaluationPeriods", "DatapointsToAlarm", "Threshold",
                    "ComparisonOperator", "TreatMissingData",
                    "EvaluateLowSampleCountPercentile"):  # fmt: skip
            if key in d:
                shown[key] = d[key]
        shown["StateTransitionedTimestamp"] = Timestamp(alarm.state_transitioned)
        return shown

    def describe_alarms(self, params: Params) -> Answer:
        names = params.get("AlarmNames") or None
        prefix = params.get("AlarmNamePrefix")
        if names is not None and prefix is not None:
            raise InvalidParameterCombination(
                "AlarmNames and AlarmNamePrefix cannot both be given: give one of them."
            )
        types = params.get("AlarmTypes")
        state = params.get("StateValue")
        action_prefix = params.get("ActionPrefix")
        limit = int(params.get("MaxRecords") or DESCRIBE_PAGE)
        after = self._after(_DESCRIBE_TOKEN, params.get("NextToken"), "DescribeAlarms")
        if after is not None and not isinstance(after, str):
            raise _bad_token("DescribeAlarms")(str(params.get("NextToken")))
        chosen: list[StoredAlarm] = []
        if types is None or "MetricAlarm" in types:
            for alarm in self._store.all():
                if names is not None and alarm.name not in names:
                    continue
                if prefix is not None and not alarm.name.startswith(prefix):
                    continue
                if state is not None and alarm.state != state:
                    continue
                if action_prefix is not None and not any(
                    arn.startswith(action_prefix) for arn in _actions(alarm.definition)
                ):
                    continue
                if after is not None and alarm.name <= after:
                    continue
                chosen.append(alarm)
        page = chosen[:limit]
        answer: Answer = {"MetricAlarms": [self._shown(a) for a in page], "CompositeAlarms": []}
        if len(chosen) > limit:
            answer["NextToken"] = _DESCRIBE_TOKEN.encode({"after": page[-1].name})
        return answer

    @staticmethod
    def _after(codec: TokenCodec, token: str | None, operation: str) -> Any:
        if token is None:
            return None
        after = codec.decode(token).get("after")
        if after is None:
            raise _bad_token(operation)(token)
        return after

    def describe_alarms_for_metric(self, params: Params) -> Answer:
        wanted = _metric_id(params)
        found: list[Answer] = []
        for alarm in self._store.all():
            d = alarm.definition
            if _metric_id(d) != wanted:
                continue
            if any(
                params.get(key) is not None and params[key] != d.get(key)
                for key in ("Statistic", "ExtendedStatistic", "Period", "Unit")
            ):
                continue
            found.append(self._shown(alarm))
        return {"MetricAlarms": found}

    def delete_alarms(self, params: Params) -> Answer:
        names = list(params["AlarmNames"])
        with self._state_lock:
            missing = [name for name in names if self._store.get(name) is None]
            if missing:
                raise ResourceNotFound(
                    f"No alarm named {', '.join(missing[:10])[:512]} exists; no alarm was "
                    "deleted. Check the names with DescribeAlarms."
                )
            self._store.delete(names)
            for name in names:
                self._repeated.pop(name, None)
        return {}

    def set_alarm_state(self, params: Params) -> Answer:
        name = params["AlarmName"]
        data = params.get("StateReasonData")
        if data is not None:
            try:
                json.loads(data)
            except (ValueError, RecursionError):
                raise InvalidFormat(
                    "StateReasonData is not valid JSON: give a JSON document, or leave it out."
                ) from None
        outcome = Outcome(params["StateValue"], params["StateReason"], data or "")
        if not self._transition(name, outcome, force=True):
            raise ResourceNotFound(f"No alarm named {name[:255]} exists.")
        return {}

    def alarm_state(self, name: str) -> str | None:
        """The state of the alarm `name` (ALARM, OK, INSUFFICIENT_DATA), None when there is no
        such alarm: what a deployment's AutoRollbackConfiguration watches (any thread)."""
        alarm = self._store.get(name)
        return None if alarm is None else alarm.state

    def describe_alarm_history(self, params: Params) -> Answer:
        types = params.get("AlarmTypes")
        if types is not None and "MetricAlarm" not in types:
            return {"AlarmHistoryItems": []}
        start, end = params.get("StartDate"), params.get("EndDate")
        limit = int(params.get("MaxRecords") or HISTORY_PAGE)
        ascending = params.get("ScanBy") == "TimestampAscending"
        items = self._store.history(
            params.get("AlarmName"), params.get("HistoryItemType"), start, end, ascending
        )
        after = self._after(_HISTORY_TOKEN, params.get("NextToken"), "DescribeAlarmHistory")
        if after is not None:
            if not isinstance(after, int):
                raise _bad_token("DescribeAlarmHistory")(str(params.get("NextToken")))
            items = [i for i in items if (i.seq > after if ascending else i.seq < after)]
        page = items[:limit]
        answer: Answer = {
            "AlarmHistoryItems": [
                {
                    "AlarmName": item.name,
                    "AlarmType": "MetricAlarm",
                    "Timestamp": Timestamp(item.at),
                    "HistoryItemType": item.kind,
                    "HistorySummary": item.summary,
                    "HistoryData": item.data,
                }
                for item in page
            ]
        }
        if len(items) > limit:
            answer["NextToken"] = _HISTORY_TOKEN.encode({"after": page[-1].seq})
        return answer

    def _enable(self, params: Params, enabled: bool) -> Answer:
        # As on CloudWatch, names of alarms that do not exist are passed over.
        self._store.set_actions_enabled(params["AlarmNames"], enabled, self._clock())
        return {}

    # -- evaluation ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Evaluate every alarm each `interval_s` until cancelled."""
        while True:
            try:
                await asyncio.to_thread(self.evaluate_all)
            except Exception:  # an evaluation that failed is retried at the next one
                log.exception("alarm evaluation failed; the next interval will try again")
            await asyncio.sleep(max(self.interval_s, MIN_INTERVAL_S))

    def evaluate_all(self) -> int:
        """One evaluation of every alarm; how many changed state."""
        with self._evaluating:
            if self._closed:
                return 0
            return self._evaluate_all()

    def _evaluate_all(self) -> int:
        changed = 0
        now = self._clock()
        for alarm in self._store.all():
            try:
                rule = scaled(rule_of(alarm.definition), self.time_scale)
                outcome = evaluate(rule, self._reader, now, alarm.state, self._unit_of)
            except Exception:
                log.exception("evaluating alarm %s failed", alarm.name)
                continue
            range_end = evaluation_range(rule, now)[1]
            if outcome is not None and outcome.state != alarm.state:
                self._repeated[alarm.name] = range_end
                changed += self._transition(alarm.name, outcome, force=False, at=now)
            elif self._repeated.setdefault(alarm.name, range_end) < range_end:
                self._repeated[alarm.name] = range_end
                if alarm.actions_enabled:
                    self._act(alarm, alarm.state, now, repeating_only=True, fresh=outcome)
        return changed

    def _transition(
        self, name: str, outcome: Outcome, *, force: bool, at: float | None = None
    ) -> bool:
        """Move `name` to `outcome`'s state: store it with its history item, run the new
        state's actions. `force` (SetAlarmState): even into the state it is in, which changes
        the reason only and runs no action, as on CloudWatch. False when there is no such alarm."""
        at = self._clock() if at is None else at
        with self._state_lock:
            alarm = self._store.get(name)
            if alarm is None:
                return False
            old = alarm.state
            if old == outcome.state and not force:
                return True
            if old == outcome.state:
                self._store.set_state(
                    name, outcome.state, outcome.reason, outcome.reason_data or None, at, None
                )
                return True
            summary = f"Alarm updated from {old} to {outcome.state}"
            new_state: Answer = {"stateValue": outcome.state, "stateReason": outcome.reason}
            if outcome.reason_data:
                new_state["stateReasonData"] = json.loads(outcome.reason_data)
            data = {
                "version": "1.0",
                "oldState": {"stateValue": old, "stateReason": alarm.reason},
                "newState": new_state,
            }
            item = HistoryItem(
                0, name, at, "StateUpdate", summary, json.dumps(data, separators=(",", ":"))
            )
            self._store.set_state(
                name, outcome.state, outcome.reason, outcome.reason_data or None, at, item
            )
            updated = self._store.get(name)
        if updated is not None and updated.actions_enabled:
            self._act(updated, old, at)
        return True

    def _act(
        self,
        alarm: StoredAlarm,
        old: str,
        at: float,
        *,
        repeating_only: bool = False,
        fresh: Outcome | None = None,
    ) -> None:
        """Run the actions of the state `alarm` is in. `repeating_only`: the alarm stayed in
        it, so only the handlers that repeat run, and they see `fresh`, this evaluation's
        datapoints (a scaling policy must act on the metric now, not on the one that moved
        the alarm into its state)."""
        actions = alarm.definition.get(_ACTION_LISTS[alarm.state], [])
        if repeating_only:
            actions = [arn for arn in actions if self.handlers.repeats(arn)]
        if not actions:
            return
        shown = self._shown(alarm)
        if fresh is not None and fresh.reason_data:
            shown = dict(shown, StateReason=fresh.reason, StateReasonData=fresh.reason_data)
        described = dict(shown, _configured=wire_time(alarm.configured))
        message = notification(
            described, old, alarm.state, alarm.reason, wire_time(at), self._region, self._account_id
        )
        for arn in actions:
            event = AlarmEvent(
                arn,
                alarm.name,
                shown["AlarmArn"],
                old,
                alarm.state,
                str(shown.get("StateReason", alarm.reason)),
                at,
                _json_alarm(shown),
                message,
            )
            self._actions.submit(self._run_action, event)

    def _run_action(self, event: AlarmEvent) -> None:
        handler = self.handlers.find(event.action_arn)
        try:
            if handler is None:
                raise RuntimeError("no handler is registered for it any more")
            handler(event)
        except Exception as error:
            reason = failure_text(error)
            log.warning(
                "alarm %s: action %s failed: %s", event.alarm_name, event.action_arn, reason
            )
            summary = f"Failed to execute action {event.action_arn}. Received error: {reason}"
            ok = False
        else:
            summary = f"Successfully executed action {event.action_arn}"
            ok = True
        data = {
            "actionState": "Succeeded" if ok else "Failed",
            "stateUpdateTimestamp": int(event.at * 1000),
        }
        if not ok:
            data["error"] = summary
        try:
            self._store.add_history(
                HistoryItem(
                    0,
                    event.alarm_name,
                    self._clock(),
                    "Action",
                    summary,
                    json.dumps(data, separators=(",", ":")),
                )
            )
        except Exception:  # the store closed at shutdown: the log has the outcome
            log.debug("could not record an action's outcome", exc_info=True)

    def close(self, wait: bool = True) -> None:
        """Wait for an evaluation under way, finish the actions it started (a notification in
        flight is sent); no evaluation runs after. The caller closes the store then."""
        with self._evaluating:
            self._closed = True
        self._actions.shutdown(wait=wait)


def _actions(definition: Mapping[str, Any]) -> Sequence[str]:
    return [
        *definition.get("OKActions", []),
        *definition.get("AlarmActions", []),
        *definition.get("InsufficientDataActions", []),
    ]


def _json_alarm(shown: Mapping[str, Any]) -> dict[str, Any]:
    """The alarm with its timestamps as text, for JSON history data and action events."""
    out: dict[str, Any] = {}
    for key, value in shown.items():
        if key.startswith("_"):
            continue
        out[key] = wire_time(value) if key.endswith("Timestamp") else value
    return out
