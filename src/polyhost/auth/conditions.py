"""IAM condition operators, validated at load and evaluated as IAM documents them.

The rules (IAM User Guide, "Condition operators" and "Multivalued context keys"):

- Within one key, the policy's values OR; all keys of an operator, and all operators of a
  `Condition` block, AND.
- A key the request does not carry makes a condition false, except for the negated operators
  (`StringNotEquals`, `StringNotLike`, `NotIpAddress`, `NumericNotEquals`, `DateNotEquals`,
  ...), which are then true; `...IfExists` is true on a missing key; `Null` tests presence.
- A negated operator holds when the request's value matches none of the policy's values.
- `ForAllValues:` holds when every request value satisfies the operator, and so also when the
  key is missing or empty; `ForAnyValue:` holds when at least one does, so never on a missing
  or empty key.
- Values compare case-sensitively, except with the `...IgnoreCase` operators; keys are
  case-insensitive.

An operator IAM has but polyhost cannot use (ARN and binary operators: no request carries an
ARN or binary key here) and any unknown operator or key is an error at load, never a silent
non-match.
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from polyhost.auth.context import KNOWN_KEYS
from polyhost.auth.patterns import Lookup, Template, parse_template

# One policy value tested against one request value.
Matcher = Callable[[str, Lookup], bool]

MAX_VALUES_PER_KEY = 100


class Qualifier(enum.Enum):
    NONE = ""
    FOR_ANY_VALUE = "ForAnyValue"
    FOR_ALL_VALUES = "ForAllValues"


@dataclass(frozen=True, slots=True)
class _Family:
    """How to read a policy value of an operator into a matcher."""

    negated: bool
    compile: Callable[[str, bool, Mapping[str, str]], tuple[Matcher, frozenset[str]]]


# -- value readers ---------------------------------------------------------------------------
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_EPOCH = re.compile(r"\d+(?:\.\d+)?")
_ISO = re.compile(
    r"(\d{4})-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?"
    r"(Z|[+-]\d{2}:\d{2})?)?)?"
)


def parse_number(text: str) -> float | None:
    return float(text) if _NUMBER.fullmatch(text) else None


def parse_date(text: str) -> float | None:
    """Epoch seconds of an IAM date value: epoch seconds, or a W3C profile of ISO 8601.

    All-digit text is epoch seconds (so a bare year `2024` is not a date: write 2024-01-01).
    A time without a zone designator is read as UTC.
    """
    if _EPOCH.fullmatch(text):
        return float(text)
    match = _ISO.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    tz: timezone = UTC
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        tz = timezone(sign * offset)
    try:
        moment = datetime(
            int(year),
            int(month),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            tzinfo=tz,
        )
    except ValueError:
        return None
    return moment.timestamp() + (float(fraction) if fraction else 0.0)


def _request_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


# -- matchers per family ---------------------------------------------------------------------
def _no_lookup(_key: str) -> tuple[str, ...] | None:
    return None


def _string_equals(
    value: str, variables: bool, keys: Mapping[str, str]
) -> tuple[Matcher, frozenset[str]]:
    template = Template(
        parse_template(value, wildcards=False, variables=variables, known_keys=keys)
    )
    if not template.keys:
        fixed = template.text(_no_lookup)
        return (lambda v, _lookup: v == fixed), frozenset()
    return (lambda v, lookup: v == template.text(lookup)), template.keys


def _string_equals_ignore_case(
    value: str, variables: bool, keys: Mapping[str, str]
) -> tuple[Matcher, frozenset[str]]:
    template = Template(
        parse_template(value, wildcards=False, variables=variables, known_keys=keys)
    )
    if not template.keys:
        fixed = template.text(_no_lookup).lower()
        return (lambda v, _lookup: v.lower() == fixed), frozenset()
    return (lambda v, lookup: v.lower() == template.text(lookup).lower()), template.keys


def _string_like(
    value: str, variables: bool, keys: Mapping[str, str]
) -> tuple[Matcher, frozenset[str]]:
    template = Template(parse_template(value, wildcards=True, variables=variables, known_keys=keys))
    return template.matches, template.keys


def _numeric(
    compare: Callable[[float, float], bool],
) -> Callable[..., tuple[Matcher, frozenset[str]]]:
    def build(
        value: str, _variables: bool, _keys: Mapping[str, str]
    ) -> tuple[Matcher, frozenset[str]]:
        bound = parse_number(value)
        if bound is None:
            raise ValueError(f"{value!r} is not a number")

        def match(v: str, _lookup: Lookup) -> bool:
            number = parse_number(v)
            return number is not None and compare(number, bound)

        return match, frozenset()

    return build


def _date(compare: Callable[[float, float], bool]) -> Callable[..., tuple[Matcher, frozenset[str]]]:
    def build(
        value: str, _variables: bool, _keys: Mapping[str, str]
    ) -> tuple[Matcher, frozenset[str]]:
        bound = parse_date(value)
        if bound is None:
            raise ValueError(
                f"{value!r} is not a date: write ISO 8601 (2024-01-31, 2024-01-31T12:00:00Z) "
                "or epoch seconds"
            )

        def match(v: str, _lookup: Lookup) -> bool:
            moment = parse_date(v)
            return moment is not None and compare(moment, bound)

        return match, frozenset()

    return build


def _bool(value: str, _variables: bool, _keys: Mapping[str, str]) -> tuple[Matcher, frozenset[str]]:
    wanted = value.lower()
    if wanted not in ("true", "false"):
        raise ValueError(f"{value!r} is not a boolean: write true or false")
    return (lambda v, _lookup: v.lower() == wanted), frozenset()


def _ip(value: str, _variables: bool, _keys: Mapping[str, str]) -> tuple[Matcher, frozenset[str]]:
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address or CIDR range (203.0.113.0/24, 2001:db8::/32)"
        ) from None

    def match(v: str, _lookup: Lookup) -> bool:
        address = _request_ip(v)
        return address is not None and address.version == network.version and address in network

    return match, frozenset()


def _lt(a: float, b: float) -> bool:
    return a < b


def _le(a: float, b: float) -> bool:
    return a <= b


def _gt(a: float, b: float) -> bool:
    return a > b


def _ge(a: float, b: float) -> bool:
    return a >= b


def _eq(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=0.0, abs_tol=1e-9)


OPERATORS: dict[str, _Family] = {
    "StringEquals": _Family(False, _string_equals),
    "StringNotEquals": _Family(True, _string_equals),
    "StringEqualsIgnoreCase": _Family(False, _string_equals_ignore_case),
    "StringNotEqualsIgnoreCase": _Family(True, _string_equals_ignore_case),
    "StringLike": _Family(False, _string_like),
    "StringNotLike": _Family(True, _string_like),
    "NumericEquals": _Family(False, _numeric(_eq)),
    "NumericNotEquals": _Family(True, _numeric(_eq)),
    "NumericLessThan": _Family(False, _numeric(_lt)),
    "NumericLessThanEquals": _Family(False, _numeric(_le)),
    "NumericGreaterThan": _Family(False, _numeric(_gt)),
    "NumericGreaterThanEquals": _Family(False, _numeric(_ge)),
    "DateEquals": _Family(False, _date(_eq)),
    "DateNotEquals": _Family(True, _date(_eq)),
    "DateLessThan": _Family(False, _date(_lt)),
    "DateLessThanEquals": _Family(False, _date(_le)),
    "DateGreaterThan": _Family(False, _date(_gt)),
    "DateGreaterThanEquals": _Family(False, _date(_ge)),
    "Bool": _Family(False, _bool),
    "IpAddress": _Family(False, _ip),
    "NotIpAddress": _Family(True, _ip),
}
_UNSUPPORTED = ("ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike", "BinaryEquals")
NULL = "Null"


@dataclass(frozen=True, slots=True)
class Condition:
    """One operator applied to one key with its policy values (OR-ed)."""

    operator: str  # as written, for explanations
    key: str  # lowercased
    qualifier: Qualifier
    if_exists: bool
    negated: bool
    null: bool  # the Null operator: `matchers` unused, `null_wants` holds its values
    null_wants: tuple[bool, ...]
    matchers: tuple[Matcher, ...]
    keys: frozenset[str]  # every key this condition reads (its own and its variables')

    def evaluate(self, lookup: Lookup) -> bool:
        values = lookup(self.key)
        if self.null:
            absent = not values
            return any(absent == wants for wants in self.null_wants)
        if not values:
            if self.if_exists or self.qualifier is Qualifier.FOR_ALL_VALUES:
                return True
            if self.qualifier is Qualifier.FOR_ANY_VALUE:
                return False
            return self.negated
        if self.qualifier is Qualifier.NONE:
            hit = any(self._hit(v, lookup) for v in values)
            return not hit if self.negated else hit
        if self.qualifier is Qualifier.FOR_ALL_VALUES:
            return all(self._hit(v, lookup) != self.negated for v in values)
        return any(self._hit(v, lookup) != self.negated for v in values)

    def _hit(self, value: str, lookup: Lookup) -> bool:
        """Whether the request value matches at least one of the policy's values."""
        return any(match(value, lookup) for match in self.matchers)


def split_operator(name: str) -> tuple[Qualifier, str, bool]:
    """(qualifier, base operator, IfExists) of an operator name; raises ValueError."""
    qualifier = Qualifier.NONE
    base = name
    for candidate in (Qualifier.FOR_ANY_VALUE, Qualifier.FOR_ALL_VALUES):
        prefix = candidate.value + ":"
        if name.startswith(prefix):
            qualifier, base = candidate, name[len(prefix) :]
    if_exists = base.endswith("IfExists") and base != "IfExists"
    if if_exists:
        base = base[: -len("IfExists")]
    if base == NULL:
        if if_exists or qualifier is not Qualifier.NONE:
            raise ValueError(
                f"condition operator {name!r}: Null takes neither IfExists nor a set qualifier"
            )
        return qualifier, base, if_exists
    if base in OPERATORS:
        return qualifier, base, if_exists
    if base in _UNSUPPORTED:
        raise ValueError(
            f"condition operator {name!r} is not supported: no request carries an ARN or binary "
            "condition key here"
        )
    hint = ""
    for known in (*OPERATORS, NULL):
        if known.lower() == base.lower():
            hint = f" (operators are case-sensitive: did you mean {known!r}?)"
    raise ValueError(f"unknown condition operator {name!r}{hint}")


def parse_condition(
    operator: str,
    key: str,
    values: tuple[str, ...],
    *,
    variables: bool,
    known_keys: Mapping[str, str] = KNOWN_KEYS,
) -> Condition:
    """One Condition; raises ValueError saying what is wrong (the caller adds where)."""
    qualifier, base, if_exists = split_operator(operator)
    folded = key.lower()
    if folded not in known_keys:
        raise ValueError(
            f"condition key {key!r} is not one polyhost provides; known keys: "
            f"{', '.join(sorted(known_keys.values()))}"
        )
    if not values:
        raise ValueError(f"condition {operator} on {key!r} has no values")
    if len(values) > MAX_VALUES_PER_KEY:
        raise ValueError(
            f"condition {operator} on {key!r} has more than {MAX_VALUES_PER_KEY} values"
        )
    if base == NULL:
        wants = []
        for value in values:
            if value.lower() not in ("true", "false"):
                raise ValueError(f"Null on {key!r}: {value!r} is not true or false")
            wants.append(value.lower() == "true")
        return Condition(
            operator, folded, qualifier, False, False, True, tuple(wants), (), frozenset({folded})
        )
    family = OPERATORS[base]
    matchers: list[Matcher] = []
    keys = {folded}
    for value in values:
        try:
            matcher, used = family.compile(value, variables, known_keys)
        except ValueError as error:
            raise ValueError(f"condition {operator} on {key!r}: {error}") from None
        matchers.append(matcher)
        keys |= used
    return Condition(
        operator,
        folded,
        qualifier,
        if_exists,
        family.negated,
        False,
        (),
        tuple(matchers),
        frozenset(keys),
    )
