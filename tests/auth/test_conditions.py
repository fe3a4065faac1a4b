"""Every condition operator against IAM's documented semantics, one table row per case.

The rows that matter most are the edges IAM spells out: a missing key makes a condition false
except for the negated operators (true), `...IfExists` (true) and `Null`; `ForAllValues` on a
missing or empty key is true and `ForAnyValue` false; a negated operator holds only when the
request's value matches none of the policy's values.
"""

from __future__ import annotations

import calendar

import pytest

from polyhost.auth.conditions import parse_condition, parse_date
from polyhost.auth.patterns import Lookup
from tests.auth.helpers import context

H = "sagemaker:TargetContainerHostname"
IP = "aws:SourceIp"
SECURE = "aws:SecureTransport"
NOW = "aws:CurrentTime"
EPOCH = "aws:EpochTime"
MISSING = None
EMPTY: tuple[str, ...] = ()
T0 = "2024-05-17T12:00:00Z"
T0_EPOCH = str(calendar.timegm((2024, 5, 17, 12, 0, 0)))

Row = tuple[str, str, list[str], tuple[str, ...] | str | None, bool]

ROWS: list[Row] = [
    # -- StringEquals family: exact, case-sensitive, values OR ------------------------------------
    ("StringEquals", H, ["abc"], "abc", True),
    ("StringEquals", H, ["abc"], "ABC", False),
    ("StringEquals", H, ["abc"], "abcd", False),
    ("StringEquals", H, ["a", "b"], "b", True),
    ("StringEquals", H, ["a*"], "a*", True),  # no wildcards in Equals
    ("StringEquals", H, ["a*"], "ab", False),
    ("StringEquals", H, ["abc"], MISSING, False),
    ("StringNotEquals", H, ["abc"], "abc", False),
    ("StringNotEquals", H, ["abc"], "xyz", True),
    ("StringNotEquals", H, ["a", "b"], "b", False),  # must match none of the values
    ("StringNotEquals", H, ["a", "b"], "c", True),
    ("StringNotEquals", H, ["abc"], MISSING, True),  # negated + missing key -> true
    ("StringEqualsIgnoreCase", H, ["ABC"], "abc", True),
    ("StringEqualsIgnoreCase", H, ["ABC"], "abd", False),
    ("StringEqualsIgnoreCase", H, ["ABC"], MISSING, False),
    ("StringNotEqualsIgnoreCase", H, ["ABC"], "aBc", False),
    ("StringNotEqualsIgnoreCase", H, ["ABC"], "abd", True),
    ("StringNotEqualsIgnoreCase", H, ["ABC"], MISSING, True),
    # -- StringLike: * any run (also empty), ? one character, full match, case-sensitive ----------
    ("StringLike", H, ["common*"], "commonModel", True),
    ("StringLike", H, ["common*"], "common", True),
    ("StringLike", H, ["common*"], "Common1", False),
    ("StringLike", H, ["common*"], "xcommon", False),
    ("StringLike", H, ["c?1"], "cx1", True),
    ("StringLike", H, ["c?1"], "c1", False),
    ("StringLike", H, ["c?1"], "cxx1", False),
    ("StringLike", H, ["*mid*"], "amidb", True),
    ("StringLike", H, ["a*b*c"], "aXbYc", True),
    ("StringLike", H, ["a*b*c"], "aXcYb", False),
    ("StringLike", H, ["x", "y*"], "yes", True),
    ("StringLike", H, ["*"], MISSING, False),
    ("StringNotLike", H, ["special*"], "special1", False),
    ("StringNotLike", H, ["special*"], "other", True),
    ("StringNotLike", H, ["a*", "b*"], "b1", False),
    ("StringNotLike", H, ["special*"], MISSING, True),
    # -- ...IfExists: a missing key is true, a present one is tested --------------------------
    ("StringEqualsIfExists", H, ["a"], MISSING, True),
    ("StringEqualsIfExists", H, ["a"], "a", True),
    ("StringEqualsIfExists", H, ["a"], "b", False),
    ("StringLikeIfExists", H, ["c*"], "d", False),
    ("StringNotLikeIfExists", H, ["special*"], MISSING, True),
    ("StringNotLikeIfExists", H, ["special*"], "special1", False),
    ("StringNotEqualsIfExists", H, ["a"], "b", True),
    ("IpAddressIfExists", IP, ["10.0.0.0/8"], MISSING, True),
    ("DateLessThanIfExists", NOW, ["2030-01-01"], MISSING, True),
    # -- set qualifiers ---------------------------------------------------------------------------
    ("ForAllValues:StringLike", H, ["a*", "b*"], ("a1", "b2"), True),
    ("ForAllValues:StringLike", H, ["a*", "b*"], ("a1", "c"), False),
    ("ForAllValues:StringLike", H, ["a*"], MISSING, True),
    ("ForAllValues:StringLike", H, ["a*"], EMPTY, True),
    ("ForAllValues:StringEquals", H, ["a"], MISSING, True),
    ("ForAnyValue:StringLike", H, ["a*"], ("x", "a1"), True),
    ("ForAnyValue:StringLike", H, ["a*"], ("x",), False),
    ("ForAnyValue:StringLike", H, ["a*"], MISSING, False),
    ("ForAnyValue:StringLike", H, ["a*"], EMPTY, False),
    ("ForAnyValue:StringLikeIfExists", H, ["a*"], MISSING, True),
    ("ForAllValues:StringNotEquals", H, ["a", "b"], ("c", "d"), True),
    ("ForAllValues:StringNotEquals", H, ["a", "b"], ("c", "a"), False),
    ("ForAllValues:StringNotEquals", H, ["a"], MISSING, True),
    ("ForAnyValue:StringNotEquals", H, ["a"], ("a", "c"), True),
    ("ForAnyValue:StringNotEquals", H, ["a"], ("a",), False),
    ("ForAnyValue:StringNotEquals", H, ["a"], MISSING, False),
    ("ForAnyValue:StringEqualsIgnoreCase", H, ["A"], ("x", "a"), True),
    # -- Null: true = the key is absent, false = present ---------------------------------------
    ("Null", H, ["true"], MISSING, True),
    ("Null", H, ["true"], "x", False),
    ("Null", H, ["false"], MISSING, False),
    ("Null", H, ["false"], "x", True),
    ("Null", H, ["TRUE"], EMPTY, True),
    ("Null", H, ["true", "false"], "x", True),
    # -- Bool ------------------------------------------------------------------------------------
    ("Bool", SECURE, ["true"], "true", True),
    ("Bool", SECURE, ["true"], "false", False),
    ("Bool", SECURE, ["false"], "false", True),
    ("Bool", SECURE, ["True"], "true", True),
    ("Bool", SECURE, ["true"], MISSING, False),
    ("BoolIfExists", SECURE, ["true"], MISSING, True),
    # -- IpAddress / NotIpAddress: CIDR, v4 and v6, a bare address is /32 ---------------------
    ("IpAddress", IP, ["203.0.113.0/24"], "203.0.113.7", True),
    ("IpAddress", IP, ["203.0.113.0/24"], "203.0.114.1", False),
    ("IpAddress", IP, ["203.0.113.0/24"], "::ffff:203.0.113.9", True),  # v4-mapped v6
    ("IpAddress", IP, ["203.0.113.0/24"], "2001:db8::1", False),
    ("IpAddress", IP, ["203.0.113.0/24"], "not-an-ip", False),
    ("IpAddress", IP, ["203.0.113.0/24"], MISSING, False),
    ("IpAddress", IP, ["203.0.113.7"], "203.0.113.7", True),
    ("IpAddress", IP, ["203.0.113.7"], "203.0.113.8", False),
    ("IpAddress", IP, ["2001:DB8:1234:5678::/64"], "2001:db8:1234:5678::1", True),
    ("IpAddress", IP, ["2001:DB8:1234:5678::/64"], "2001:db8:1234:5679::1", False),
    ("IpAddress", IP, ["10.0.0.0/8", "2001:db8::/32"], "2001:db8::5", True),
    ("NotIpAddress", IP, ["203.0.113.0/24"], "203.0.113.7", False),
    ("NotIpAddress", IP, ["203.0.113.0/24"], "198.51.100.1", True),
    ("NotIpAddress", IP, ["203.0.113.0/24"], MISSING, True),
    # -- dates: ISO 8601 (W3C profiles) or epoch seconds, on both sides --------------------------
    ("DateLessThan", NOW, ["2024-06-01T00:00:00Z"], T0, True),
    ("DateLessThan", NOW, [T0], T0, False),
    ("DateLessThanEquals", NOW, [T0], T0, True),
    ("DateGreaterThan", NOW, ["2024-01-01"], T0, True),
    ("DateGreaterThan", NOW, [T0], T0, False),
    ("DateGreaterThanEquals", NOW, [T0], T0, True),
    ("DateEquals", NOW, [T0_EPOCH], T0, True),
    ("DateEquals", NOW, ["2024-05-17T14:00:00+02:00"], T0, True),
    ("DateEquals", NOW, ["2024-05-17T12:00Z"], T0, True),
    ("DateEquals", NOW, ["2024-05-17T12:00:00.000Z"], T0, True),
    ("DateNotEquals", NOW, [T0], T0, False),
    ("DateNotEquals", NOW, ["2024-01-01"], T0, True),
    ("DateNotEquals", NOW, [T0], MISSING, True),
    ("DateLessThan", NOW, ["2030-01-01"], MISSING, False),
    ("DateLessThan", EPOCH, ["2024-05-17T12:00:01Z"], T0_EPOCH, True),
    ("DateGreaterThan", EPOCH, ["2024-05-17T12:00:01Z"], T0_EPOCH, False),
    ("DateLessThan", NOW, ["2030-01-01"], "garbage", False),
    # -- numbers (aws:EpochTime is the numeric key requests carry) -----------------------------
    ("NumericEquals", EPOCH, [T0_EPOCH], T0_EPOCH, True),
    ("NumericNotEquals", EPOCH, [T0_EPOCH], T0_EPOCH, False),
    ("NumericNotEquals", EPOCH, ["1"], T0_EPOCH, True),
    ("NumericNotEquals", EPOCH, ["1"], MISSING, True),
    ("NumericLessThan", EPOCH, ["1715947201"], T0_EPOCH, True),
    ("NumericLessThan", EPOCH, [T0_EPOCH], T0_EPOCH, False),
    ("NumericLessThanEquals", EPOCH, [T0_EPOCH], T0_EPOCH, True),
    ("NumericGreaterThan", EPOCH, ["1715947199.5"], T0_EPOCH, True),
    ("NumericGreaterThanEquals", EPOCH, ["1715947201"], T0_EPOCH, False),
    ("NumericLessThan", EPOCH, ["5"], "abc", False),
    ("NumericLessThan", EPOCH, ["5"], MISSING, False),
]


def lookup_of(key: str, value: tuple[str, ...] | str | None) -> Lookup:
    values = (value,) if isinstance(value, str) else value

    def lookup(asked: str) -> tuple[str, ...] | None:
        return values if asked == key.lower() else None

    return lookup


@pytest.mark.parametrize(
    ("operator", "key", "values", "request_value", "expected"),
    ROWS,
    ids=[f"{r[0]}{r[2]}~{r[3]!r}" for r in ROWS],
)
def test_operator_matrix(
    operator: str,
    key: str,
    values: list[str],
    request_value: tuple[str, ...] | str | None,
    expected: bool,
) -> None:
    condition = parse_condition(operator, key, tuple(values), variables=True)
    assert condition.evaluate(lookup_of(key, request_value)) is expected


def test_every_operator_appears_in_the_matrix() -> None:
    from polyhost.auth.conditions import OPERATORS

    used = {row[0].split(":")[-1].removesuffix("IfExists") for row in ROWS}
    assert set(OPERATORS) | {"Null"} <= used


@pytest.mark.parametrize("spelling", [H, H.lower(), H.upper(), "SageMaker:targetContainerHostName"])
def test_condition_keys_are_case_insensitive(spelling: str) -> None:
    condition = parse_condition("StringEquals", spelling, ("c1",), variables=True)
    assert condition.evaluate(context(target_container_hostname="c1").get)


def test_the_request_context_renders_the_time_keys_from_its_clock() -> None:
    ctx = context()
    assert ctx.get("aws:currenttime") == (T0,)
    assert ctx.get("aws:epochtime") == (T0_EPOCH,)
    assert ctx.get("aws:username") == ("alice",)
    assert ctx.get("aws:securetransport") == ("false",)
    assert ctx.get("sagemaker:targetcontainerhostname") is None


def test_an_empty_header_is_an_absent_key() -> None:
    ctx = context(target_container_hostname="", target_model=None)
    assert ctx.get("sagemaker:targetcontainerhostname") is None
    assert ctx.get("sagemaker:targetmodel") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1715947200", 1715947200.0),
        ("2024-05-17", 1715904000.0),
        ("2024-05", 1714521600.0),
        ("2024-05-17T12:00:00Z", 1715947200.0),
        ("2024-05-17T12:00:00", 1715947200.0),
        ("2024-05-17T13:00:00+01:00", 1715947200.0),
        ("2024-05-17T11:00:00-01:00", 1715947200.0),
        ("2024-05-17T12:00:00.5Z", 1715947200.5),
        ("2024-13-01", None),
        ("May 17 2024", None),
        ("", None),
    ],
)
def test_dates_in_iso_8601_or_epoch_seconds(text: str, expected: float | None) -> None:
    assert parse_date(text) == expected


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("operator", "key", "values", "message"),
    [
        ("StringMatches", H, ["a"], "unknown condition operator 'StringMatches'"),
        ("stringlike", H, ["a"], "did you mean 'StringLike'?"),
        ("ForSomeValues:StringLike", H, ["a"], "unknown condition operator"),
        ("ArnLike", H, ["a"], "is not supported"),
        ("BinaryEquals", H, ["YQ=="], "is not supported"),
        ("NullIfExists", H, ["true"], "Null takes neither IfExists nor a set qualifier"),
        ("ForAllValues:Null", H, ["true"], "Null takes neither IfExists nor a set qualifier"),
        ("Null", H, ["yes"], "'yes' is not true or false"),
        ("StringLike", "aws:PrincipalTag/team", ["a"], "is not one polyhost provides"),
        ("StringLike", H, [], "has no values"),
        ("StringLike", H, ["x"] * 101, "more than 100 values"),
        ("IpAddress", IP, ["10.0.0.0/33"], "not an IP address or CIDR range"),
        ("DateLessThan", NOW, ["tomorrow"], "is not a date"),
        ("NumericLessThan", EPOCH, ["ten"], "is not a number"),
        ("Bool", SECURE, ["yes"], "is not a boolean"),
        ("StringLike", H, ["${aws:PrincipalTag/x}"], "uses policy variable"),
        ("StringLike", H, ["${aws:username"], "unterminated policy variable"),
        ("StringLike", H, ["${aws:username, default}"], "malformed policy variable"),
    ],
)
def test_what_is_refused_at_load(operator: str, key: str, values: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        parse_condition(operator, key, tuple(values), variables=True)
    assert message in str(caught.value)


def test_policy_variables_need_the_2012_version() -> None:
    with pytest.raises(ValueError, match='needs "Version": "2012-10-17"'):
        parse_condition("StringLike", H, ("${aws:username}*",), variables=False)
