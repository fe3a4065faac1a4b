"""One evaluation of one metric alarm: its evaluation range read from the metric history, each
period's datapoint compared with the threshold, the state that follows, and the StateReason
and StateReasonData CloudWatch writes for it.

Pure apart from the read: `evaluate` takes the alarm, the history and the time, and returns
what the alarm's state should now be (`Outcome`); `alarms.AlarmService` stores it, records the
history entry and runs the actions when the state changed.

The rules (docs/alarms.md has them with examples):
- The evaluation range is the last EvaluationPeriods whole periods that have ended at least
  `SETTLE_S` ago (the recorder writes a 10-second slot just after it ends, so the period in
  progress, or one that ended a moment ago, is never judged on part of its data).
- A period with data gives one datapoint, its Statistic or percentile; a period without is
  missing. TreatMissingData `breaching` / `notBreaching` turn missing periods into breaching
  / good datapoints; `missing` and `ignore` leave them out.
- ALARM when at least DatapointsToAlarm datapoints of the range breach. Otherwise OK, unless
  every datapoint is missing: then `missing` makes INSUFFICIENT_DATA and `ignore` keeps the
  state the alarm is in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from polyhost.metrics.query import Datapoint, MetricId, MetricsReader

OK, ALARM, INSUFFICIENT_DATA = "OK", "ALARM", "INSUFFICIENT_DATA"
SETTLE_S = 3.0

# The four comparisons of a static threshold, and how StateReason words them.
COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanOrEqualToThreshold": (lambda v, t: v >= t, "greater than or equal to"),
    "GreaterThanThreshold": (lambda v, t: v > t, "greater than"),
    "LessThanThreshold": (lambda v, t: v < t, "less than"),
    "LessThanOrEqualToThreshold": (lambda v, t: v <= t, "less than or equal to"),
}
_STATISTIC: dict[str, Callable[[Datapoint], float]] = {
    "SampleCount": lambda p: p.sample_count,
    "Average": lambda p: p.average,
    "Sum": lambda p: p.sum,
    "Minimum": lambda p: p.minimum,
    "Maximum": lambda p: p.maximum,
}


@dataclass(frozen=True, slots=True)
class AlarmRule:
    """What an alarm watches and how it judges it: the part of an alarm evaluation reads."""

    metric: MetricId
    statistic: str | None  # Sum, Average... or None with `percent`
    percent: float | None  # the pNN of ExtendedStatistic
    extended: str | None  # ExtendedStatistic as given ("p99")
    unit: str | None
    period: int
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    treat_missing: str  # missing, ignore, breaching, notBreaching


@dataclass(frozen=True, slots=True)
class Outcome:
    """The state an evaluation arrived at, with CloudWatch's reason for it."""

    state: str
    reason: str
    reason_data: str  # JSON text, as StateReasonData is


def wire_time(seconds: float) -> str:
    """CloudWatch's timestamp in StateReasonData and notifications:
    `2026-12-07T18:40:00.000+0000`."""
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _reason_time(seconds: float) -> str:
    """How StateReason shows a datapoint's time: `07/12/26 18:40:00` (day/month/year)."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%d/%m/%y %H:%M:%S")


def _number(value: float) -> str:
    return repr(float(value))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def evaluation_range(rule: AlarmRule, now: float) -> tuple[float, float]:
    """[start, end) of the last EvaluationPeriods whole periods that have settled."""
    end = math.floor((now - SETTLE_S) / rule.period) * rule.period
    return end - rule.period * rule.evaluation_periods, float(end)


def evaluate(
    rule: AlarmRule,
    reader: MetricsReader,
    now: float,
    current_state: str,
    unit_of: Callable[[MetricId], str | None] | None = None,
) -> Outcome | None:
    """The state `rule` is in at `now`; None when it keeps `current_state` without a new
    reason (TreatMissingData `ignore` with every datapoint missing)."""
    start, end = evaluation_range(rule, now)
    points: list[Datapoint] = []
    if rule.unit is None or unit_of is None or unit_of(rule.metric) in (None, rule.unit):
        percents = () if rule.percent is None else (rule.percent,)
        points = reader.statistics(rule.metric, start, end, rule.period, percents)
    by_period: dict[int, tuple[float, float]] = {}  # period index -> (value, sample count)
    for point in points:
        index = int((point.timestamp - start) // rule.period)
        if 0 <= index < rule.evaluation_periods:
            by_period[index] = (_value(rule, point), point.sample_count)
    compare, words = COMPARISONS[rule.comparison]
    # Newest first, as CloudWatch lists recentDatapoints and the reason's datapoints.
    present: list[tuple[float, float, float]] = []  # (timestamp, value, samples)
    breaching = 0
    missing = 0
    for index in reversed(range(rule.evaluation_periods)):
        found = by_period.get(index)
        if found is None:
            missing += 1
            if rule.treat_missing == "breaching":
                breaching += 1
            continue
        value, samples = found
        present.append((start + index * rule.period, value, samples))
        if compare(value, rule.threshold):
            breaching += 1
    data = _reason_data(rule, now, start, present)
    if not present and rule.treat_missing in ("missing", "ignore"):
        if rule.treat_missing == "ignore":
            return None
        reason = (
            f"Insufficient Data: {_plural(rule.evaluation_periods, 'datapoint')} "
            f"{'was' if rule.evaluation_periods == 1 else 'were'} unknown."
        )
        return Outcome(INSUFFICIENT_DATA, reason, data)
    counted = (
        rule.evaluation_periods
        if rule.treat_missing in ("breaching", "notBreaching")
        else len(present)
    )
    if breaching >= rule.datapoints_to_alarm:
        return Outcome(ALARM, _crossed(rule, present, breaching, counted, words, True), data)
    return Outcome(OK, _crossed(rule, present, counted - breaching, counted, words, False), data)


def _value(rule: AlarmRule, point: Datapoint) -> float:
    if rule.percent is not None:
        return float(point.percentiles.get(rule.percent, math.nan))
    assert rule.statistic is not None
    return _STATISTIC[rule.statistic](point)


def _crossed(
    rule: AlarmRule,
    present: Sequence[tuple[float, float, float]],
    count: int,
    out_of: int,
    words: str,
    breached: bool,
) -> str:
    """`Threshold Crossed: 2 out of the last 3 datapoints [5.0 (07/12/26 18:40:00), ...] were
    greater than the threshold (1.0) (minimum 2 datapoints for OK -> ALARM transition).`"""
    shown = ", ".join(f"{_number(value)} ({_reason_time(ts)})" for ts, value, _ in present)
    verb = "was" if count == 1 else "were"
    relation = words if breached else f"not {words}"
    if out_of == 1 and count == 1:
        head = "1 datapoint"
    else:
        head = f"{count} out of the last {out_of} datapoints"
    reason = (
        f"Threshold Crossed: {head} [{shown}] {verb} {relation} the threshold "
        f"({_number(rule.threshold)})"
    )
    if breached:
        minimum = _plural(rule.datapoints_to_alarm, "datapoint")
        reason += f" (minimum {minimum} for OK -> ALARM transition)"
    else:
        reason += " (minimum 1 datapoint for ALARM -> OK transition)"
    return reason + "."


def _reason_data(
    rule: AlarmRule, now: float, start: float, present: Sequence[tuple[float, float, float]]
) -> str:
    """StateReasonData as CloudWatch writes it for a threshold alarm (JSON text)."""
    data: dict[str, Any] = {
        "version": "1.0",
        "queryDate": wire_time(now),
        "startDate": wire_time(start),
    }
    if rule.percent is not None:
        data["extendedStatistic"] = rule.extended
    else:
        data["statistic"] = rule.statistic
    if rule.unit is not None:
        data["unit"] = rule.unit
    data["period"] = rule.period
    data["recentDatapoints"] = [value for _, value, _ in present]
    data["threshold"] = rule.threshold
    data["evaluatedDatapoints"] = [
        {"timestamp": wire_time(ts), "sampleCount": samples, "value": value}
        for ts, value, samples in present
    ]
    return json.dumps(data, separators=(",", ":"))
