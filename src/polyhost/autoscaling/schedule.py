"""Scheduled actions' Schedule expressions, as Application Auto Scaling writes them, and when
each runs next. Pure functions: the service asks `next_run` after every run.

- `at(yyyy-mm-ddThh:mm:ss)`: once, in the action's Timezone (UTC by default);
- `rate(N minute|minutes|hour|hours|day|days)`: every N units from the action's StartTime
  (or its creation); one unit lasts 1/time_scale of its real length (`--autoscaling-time-scale`);
- `cron(minutes hours day-of-month month day-of-week year)`: AWS's six fields, each `*`, a value,
  a range `a-b`, a list `a,b`, or an increment `a/n` or `*/n`; one of day-of-month and
  day-of-week is `?`; months JAN-DEC and days SUN-SAT (1-7, Sunday 1) by name or number. The
  `L`, `W` and `#` forms are refused, saying so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from polyhost.errors import ValidationException

_AT = re.compile(r"at\((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\)")
_RATE = re.compile(r"rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)")
_CRON = re.compile(r"cron\((.*)\)")
_UNITS = {"minute": 60, "hour": 3600, "day": 86_400}
_MONTH_NAMES = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC"
_MONTHS = {m: i + 1 for i, m in enumerate(_MONTH_NAMES.split())}
_DAYS = {d: i + 1 for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (  # name, low, high, names
    ("minutes", 0, 59, {}),
    ("hours", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _DAYS),
    ("year", 1970, 2199, {}),
)
HORIZON_DAYS = 5 * 366  # a cron expression matching nothing sooner is taken as never


@dataclass(frozen=True, slots=True)
class Schedule:
    kind: str  # "at", "rate", "cron"
    at: datetime | None = None  # at(): naive, in the action's zone
    every_s: float = 0.0  # rate(): real seconds (already divided by the time scale)
    fields: tuple[frozenset[int] | None, ...] = ()  # cron(): None is `?`


def zone(name: str | None) -> ZoneInfo:
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationException(
            f"Timezone {name[:100]!r} is not an IANA time zone: give one such as "
            "'Etc/UTC' or 'America/New_York'."
        ) from None


def _values(text: str, low: int, high: int, names: dict[str, int], field: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        if any(mark in part.upper() for mark in ("L", "W", "#")) and part.upper() not in names:
            raise ValidationException(
                f"cron {field} {part!r}: the L, W and # forms are not supported by polyhost; "
                "use values, ranges (a-b), lists (a,b) and increments (a/n)."
            )
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = _number(step_text, 1, high, {}, field)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = (
                _number(first, low, high, names, field),
                _number(last, low, high, names, field),
            )
        else:
            start = _number(part, low, high, names, field)
            end = high if step != 1 else start
        if start > end:
            raise ValidationException(f"cron {field} range {part!r} runs backwards.")
        out.update(range(start, end + 1, step))
    return frozenset(out)


def _number(text: str, low: int, high: int, names: dict[str, int], field: str) -> int:
    upper = text.strip().upper()
    if upper in names:
        return names[upper]
    if not upper.isdigit() or not low <= int(upper) <= high:
        raise ValidationException(
            f"cron {field} {text!r} is not a value from {low} to {high}"
            + (f" or a name ({', '.join(names)})" if names else "")
            + "."
        )
    return int(upper)


def parse(expression: str, time_scale: float = 1.0) -> Schedule:
    """The Schedule of `expression`; ValidationException saying which forms there are."""
    text = expression.strip()
    if match := _AT.fullmatch(text):
        try:
            year, month, day, hour, minute, second = (int(g) for g in match.groups())
            moment = datetime(year, month, day, hour, minute, second)
        except ValueError as error:
            raise ValidationException(f"Schedule {text!r}: {error}.") from None
        return Schedule("at", at=moment)
    if match := _RATE.fullmatch(text):
        count, unit = int(match.group(1)), match.group(2).rstrip("s")
        if count < 1:
            raise ValidationException(f"Schedule {text!r}: the rate must be 1 or more.")
        if (count == 1 and match.group(2).endswith("s")) or (
            count > 1 and not match.group(2).endswith("s")
        ):
            raise ValidationException(
                f"Schedule {text!r}: write rate(1 {unit}) or rate(N {unit}s)."
            )
        return Schedule("rate", every_s=count * _UNITS[unit] / time_scale)
    if match := _CRON.fullmatch(text):
        parts = match.group(1).split()
        if len(parts) != 6:
            raise ValidationException(
                f"Schedule {text!r}: cron takes six fields (minutes hours day-of-month month "
                "day-of-week year), not {len(parts)}."
            )
        fields: list[frozenset[int] | None] = []
        for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True):
            if part == "?":
                if name not in ("day-of-month", "day-of-week"):
                    raise ValidationException(f"cron {name} cannot be '?'.")
                fields.append(None)
            else:
                fields.append(_values(part, low, high, names, name))
        if (fields[2] is None) == (fields[4] is None):
            raise ValidationException(
                f"Schedule {text!r}: one of day-of-month and day-of-week must be '?', and only one."
            )
        return Schedule("cron", fields=tuple(fields))
    raise ValidationException(
        f"Schedule {text[:200]!r} is not one polyhost reads: use at(yyyy-mm-ddThh:mm:ss), "
        "rate(N minutes|hours|days) or cron(minutes hours day-of-month month day-of-week year)."
    )


def next_run(
    schedule: Schedule,
    after: float,
    tz: ZoneInfo,
    start: float | None = None,
    end: float | None = None,
    anchor: float = 0.0,
) -> float | None:
    """The first run strictly after `after` (epoch seconds) within [start, end], or None.
    A rate runs first at StartTime, or one interval after `anchor` (its creation)."""
    found: float | None
    if schedule.kind == "at":
        assert schedule.at is not None
        moment = schedule.at.replace(tzinfo=tz).timestamp()
        found = moment if moment > after and (start is None or moment >= start) else None
    elif schedule.kind == "rate":
        first = start if start is not None else anchor + schedule.every_s
        if after < first:
            found = first
        else:
            found = first + (int((after - first) // schedule.every_s) + 1) * schedule.every_s
    else:
        since = after if start is None else max(after, start - 1e-6)
        found = _next_cron(schedule.fields, since, tz)
    if found is not None and end is not None and found > end:
        return None
    return found


def _next_cron(
    fields: tuple[frozenset[int] | None, ...], after: float, tz: ZoneInfo
) -> float | None:
    minutes, hours, days, months, weekdays, years = fields
    assert minutes is not None and hours is not None and months is not None and years is not None
    local = datetime.fromtimestamp(after, UTC).astimezone(tz)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    for _ in range(HORIZON_DAYS):
        weekday = (day.isoweekday() % 7) + 1  # Sunday 1 ... Saturday 7
        if (
            day.year in years
            and day.month in months
            and (days is None or day.day in days)
            and (weekdays is None or weekday in weekdays)
        ):
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    moment = day.replace(hour=hour, minute=minute).replace(tzinfo=tz).timestamp()
                    if moment > after:
                        return moment
        day += timedelta(days=1)
    return None
