"""Filter patterns for container lines: what each form keeps, and what is refused and why."""

from __future__ import annotations

import pytest

from polyhost.errors import InvalidParameterException
from polyhost.logs.filter import parse_filter

LINES = [
    "ERROR disk full on /dev/sda",
    "ERROR timeout in handler",
    "WARN slow request: 2.5 s",
    "DEBUG ERROR retry noise",
    'INFO said "hello there"',
]


@pytest.mark.parametrize(
    ("pattern", "kept"),
    [
        ("", LINES),
        ("   ", LINES),
        ("ERROR", [LINES[0], LINES[1], LINES[3]]),
        ("ERROR timeout", [LINES[1]]),
        ("error", []),  # case-sensitive, as CloudWatch is
        ('"disk full"', [LINES[0]]),
        ('"full disk"', []),
        ("ERROR -DEBUG", [LINES[0], LINES[1]]),
        ('-"in handler" ERROR', [LINES[0], LINES[3]]),
        ("?WARN ?timeout", [LINES[1], LINES[2]]),
        ("?WARN ?timeout -slow", [LINES[1]]),
        ('"said \\"hello"', [LINES[4]]),
        ("2.5 request:", [LINES[2]]),
    ],
)
def test_what_a_pattern_keeps(pattern: str, kept: list[str]) -> None:
    match = parse_filter(pattern)
    assert [line for line in LINES if match(line)] == kept


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ('{ $.level = "ERROR" }', "JSON patterns are not supported"),
        ("[ip, user, ...]", "space-delimited patterns are not supported"),
        ('"never closed', "never closed"),
        ('"closed"then', "put a space after the closing quote"),
        ('a"b', "quote the whole term"),
        ("ERROR -", "'-' with no term after it"),
        ("?", "'?' with no term after it"),
        ('""', "an empty phrase"),
        ("x" * 1025, "at most 1024"),
    ],
)
def test_what_is_refused_says_how_to_fix_it(pattern: str, says: str) -> None:
    with pytest.raises(InvalidParameterException) as raised:
        parse_filter(pattern)
    assert says in raised.value.message
