"""Schedule expressions: what each form reads as, when it runs next, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from polyhost.autoscaling import schedule
from polyhost.errors import ValidationException

UTC_ZONE = schedule.zone(None)


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()


def test_at_runs_once_in_its_zone() -> None:
    parsed = schedule.parse("at(2030-01-02T03:04:05)")
    assert schedule.next_run(parsed, at(2030, 1, 1), UTC_ZONE) == at(2030, 1, 2, 3, 4, 5)
    assert schedule.next_run(parsed, at(2030, 1, 3), UTC_ZONE) is None
    paris = schedule.zone("Europe/Paris")
    assert schedule.next_run(parsed, at(2030, 1, 1), paris) == at(2030, 1, 2, 2, 4, 5)


def test_rate_counts_from_its_start_and_divides_by_the_time_scale() -> None:
    parsed = schedule.parse("rate(2 minutes)", time_scale=6)
    assert parsed.every_s == 20
    assert schedule.next_run(parsed, 100.0, UTC_ZONE, anchor=100.0) == 120.0
    assert schedule.next_run(parsed, 125.0, UTC_ZONE, anchor=100.0) == 140.0
    assert schedule.next_run(parsed, 10.0, UTC_ZONE, start=50.0) == 50.0
    assert schedule.next_run(parsed, 130.0, UTC_ZONE, anchor=100.0, end=135.0) is None
    assert schedule.parse("rate(1 day)").every_s == 86_400


def test_cron_fields_ranges_lists_increments_and_names() -> None:
    every_quarter = schedule.parse("cron(*/15 9-17 ? * MON-FRI *)")
    # 2030-01-04 is a Friday: 17:45 is the last run, then Monday 09:00.
    assert schedule.next_run(every_quarter, at(2030, 1, 4, 17, 40), UTC_ZONE) == at(
        2030, 1, 4, 17, 45
    )
    assert schedule.next_run(every_quarter, at(2030, 1, 4, 17, 45), UTC_ZONE) == at(
        2030, 1, 7, 9, 0
    )
    monthly = schedule.parse("cron(0 12 1,15 JAN,JUL ? 2031)")
    assert schedule.next_run(monthly, at(2030, 6, 1), UTC_ZONE) == at(2031, 1, 1, 12, 0)


@pytest.mark.parametrize(
    ("expression", "says"),
    [
        ("every day", "is not one polyhost reads"),
        ("rate(0 minutes)", "1 or more"),
        ("rate(2 minute)", "rate(N minutes)"),
        ("cron(0 12 * * *)", "six fields"),
        ("cron(0 12 * * ? *) extra", "is not one polyhost reads"),
        ("cron(0 12 L * ? *)", "not supported"),
        ("cron(0 12 * * MON#2 *)", "not supported"),
        ("cron(0 12 * * * *)", "must be '?'"),
        ("cron(0 25 * * ? *)", "from 0 to 23"),
        ("at(2030-02-30T00:00:00)", "day is out of range"),
    ],
)
def test_bad_schedules_say_what_to_write(expression: str, says: str) -> None:
    with pytest.raises(ValidationException, match=says.replace("(", r"\(").replace(")", r"\)")):
        schedule.parse(expression)


def test_an_unknown_zone_is_refused() -> None:
    with pytest.raises(ValidationException, match="IANA"):
        schedule.zone("Mars/Olympus")
