"""IAM identity policies: validated at load, evaluated as IAM evaluates them.

A policy document is checked completely when the principals file is read, so a mistake is an
error naming the principal, the policy, the statement (index and Sid) and the element, never a
request that is silently allowed or denied later. Evaluation then follows IAM's logic for
identity-based policies:

1. Any statement with `"Effect": "Deny"` that applies decides: explicit deny.
2. Else any applying `"Effect": "Allow"` statement decides: allowed.
3. Else: implicit deny.

A statement applies when its Action (or NotAction), its Resource (or NotResource) and every
condition of its Condition block match. Actions compare case-insensitively (`sagemaker:invoke*`
matches `sagemaker:InvokeEndpoint`); resources case-sensitively, part by part (`patterns.py`).
The decision names the statement that decided, as IAM's policy simulator does.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from polyhost.auth.conditions import Condition, parse_condition
from polyhost.auth.context import KNOWN_KEYS, TIME_KEYS
from polyhost.auth.errors import PolicyError
from polyhost.auth.patterns import (
    POLICY_VARIABLES_VERSION,
    ArnPattern,
    Lookup,
    Unresolved,
    Wildcard,
    parse_template,
)

VERSIONS = (POLICY_VARIABLES_VERSION, "2008-10-17")
DEFAULT_VERSION = "2008-10-17"  # IAM's reading of a policy without Version
MAX_STATEMENTS = 100
MAX_ELEMENT_VALUES = 100
MAX_CONDITION_OPERATORS = 20
MAX_CONDITION_KEYS = 20

_POLICY_ELEMENTS = ("Version", "Id", "Statement")
_STATEMENT_ELEMENTS = (
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
)
_ACTION = re.compile(r"[A-Za-z0-9*?-]+:[A-Za-z0-9*?]+")


class JsonObject(dict[str, object]):
    """A JSON object that remembers the keys it saw twice.

    `json.loads` keeps the last of two equal keys silently; in a policy that hides half of what
    its author wrote (two `StringLike` blocks, say), so the validator refuses duplicates.
    """

    duplicates: tuple[str, ...] = ()


def json_object(pairs: list[tuple[str, object]]) -> JsonObject:
    """`object_pairs_hook` for `json.loads` that records duplicate keys."""
    obj = JsonObject()
    seen: list[str] = []
    for key, value in pairs:
        if key in obj:
            seen.append(key)
        obj[key] = value
    if seen:
        obj.duplicates = tuple(seen)
    return obj


class Effect(enum.Enum):
    ALLOW = "Allow"
    DENY = "Deny"


class Outcome(enum.Enum):
    """The three outcomes, named as IAM's policy simulator names them."""

    ALLOWED = "allowed"
    EXPLICIT_DENY = "explicitDeny"
    IMPLICIT_DENY = "implicitDeny"


@dataclass(frozen=True, slots=True)
class StatementRef:
    """Which statement decided: indexes into the principal's `policies` list and the policy's
    `Statement` list, and its Sid when it has one."""

    policy_index: int
    statement_index: int
    sid: str | None

    def __str__(self) -> str:
        sid = f' (Sid "{self.sid}")' if self.sid else ""
        return f"policy {self.policy_index}, statement {self.statement_index}{sid}"


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    statement: StatementRef | None  # None for an implicit deny

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOWED

    def explain(self) -> str:
        """One line for a CLI: the outcome and the statement that decided."""
        if self.statement is None:
            return "implicitDeny: no statement allows this request"
        verb = "allowed by" if self.allowed else "explicitly denied by"
        return f"{self.outcome.value}: {verb} {self.statement}"


IMPLICIT_DENY = Decision(Outcome.IMPLICIT_DENY, None)


class Statement:
    """One statement, compiled at load: patterns and conditions are parsed once, so deciding a
    request is matching only. `keys` are the condition keys it reads (the cache keys on them)."""

    __slots__ = (
        "actions",
        "conditions",
        "effect",
        "keys",
        "not_action",
        "not_resource",
        "ref",
        "resources",
    )

    def __init__(
        self,
        ref: StatementRef,
        effect: Effect,
        actions: tuple[Wildcard, ...],
        not_action: bool,
        resources: tuple[ArnPattern, ...],
        not_resource: bool,
        conditions: tuple[Condition, ...],
    ) -> None:
        self.ref = ref
        self.effect = effect
        self.actions = actions
        self.not_action = not_action
        self.resources = resources
        self.not_resource = not_resource
        self.conditions = conditions
        keys: set[str] = set()
        for resource in resources:
            keys |= resource.keys
        for condition in conditions:
            keys |= condition.keys
        self.keys = frozenset(keys)

    def applies(self, action: str, resource_parts: list[str], lookup: Lookup) -> bool:
        if any(p.matches(action) for p in self.actions) == self.not_action:
            return False
        try:
            if any(r.matches(resource_parts, lookup) for r in self.resources) == self.not_resource:
                return False
            return all(c.evaluate(lookup) for c in self.conditions)
        except Unresolved:
            return False


@dataclass(frozen=True, slots=True)
class PolicySet:
    """A principal's policies, compiled: Deny statements apart from Allow ones, in order."""

    denies: tuple[Statement, ...]
    allows: tuple[Statement, ...]
    keys: frozenset[str]  # every condition key any statement reads
    read_keys: tuple[str, ...]  # the same, sorted: the order a decision cache keys them in
    reads_time: bool = False  # a statement reads aws:CurrentTime or aws:EpochTime

    def evaluate(self, action: str, resource: str, lookup: Lookup) -> Decision:
        parts = resource.split(":", 5)
        for statement in self.denies:
            if statement.applies(action, parts, lookup):
                return Decision(Outcome.EXPLICIT_DENY, statement.ref)
        for statement in self.allows:
            if statement.applies(action, parts, lookup):
                return Decision(Outcome.ALLOWED, statement.ref)
        return IMPLICIT_DENY


def compile_policies(policies: Iterable[Sequence[Statement]]) -> PolicySet:
    statements = [s for policy in policies for s in policy]
    keys: frozenset[str] = frozenset().union(*(s.keys for s in statements))
    return PolicySet(
        tuple(s for s in statements if s.effect is Effect.DENY),
        tuple(s for s in statements if s.effect is Effect.ALLOW),
        keys,
        tuple(sorted(keys)),
        bool(keys & TIME_KEYS),
    )


# -- validation --------------------------------------------------------------------------------
def parse_policy(
    document: object,
    *,
    policy_index: int = 0,
    where: str = "",
    known_keys: Mapping[str, str] = KNOWN_KEYS,
) -> tuple[Statement, ...]:
    """The compiled statements of one policy document; raises PolicyError naming the place.

    `where` prefixes every message (the principals loader passes `principal "NAME"`).
    """
    here = f"{where}, policy {policy_index}" if where else f"policy {policy_index}"
    if not isinstance(document, dict):
        raise PolicyError(f"{here}: a policy must be a JSON object with a Statement")
    _check_object(document, _POLICY_ELEMENTS, here, "policy")
    version = document.get("Version", DEFAULT_VERSION)
    if version not in VERSIONS:
        raise PolicyError(
            f"{here}: Version must be one of {', '.join(VERSIONS)}, not {_show(version)}"
        )
    raw = document.get("Statement")
    if raw is None:
        raise PolicyError(f"{here}: the policy has no Statement")
    items = [raw] if isinstance(raw, dict) else raw
    if not isinstance(items, list) or not items:
        raise PolicyError(
            f"{here}: Statement must be a statement object or a non-empty list of them"
        )
    if len(items) > MAX_STATEMENTS:
        raise PolicyError(f"{here}: more than {MAX_STATEMENTS} statements")
    statements: list[Statement] = []
    sids: set[str] = set()
    for index, item in enumerate(items):
        statement = _parse_statement(
            item, policy_index, index, here, version == POLICY_VARIABLES_VERSION, known_keys
        )
        sid = statement.ref.sid
        if sid is not None:
            if sid in sids:
                raise PolicyError(
                    f"{here}, statement {index}: Sid {sid!r} is used twice in the policy"
                )
            sids.add(sid)
        statements.append(statement)
    return tuple(statements)


def _parse_statement(
    item: object,
    policy_index: int,
    index: int,
    where: str,
    variables: bool,
    known_keys: Mapping[str, str],
) -> Statement:
    here = f"{where}, statement {index}"
    if not isinstance(item, dict):
        raise PolicyError(f"{here}: a statement must be a JSON object")
    sid = item.get("Sid")
    if sid is not None and not (isinstance(sid, str) and sid):
        raise PolicyError(f"{here}: Sid must be a non-empty string")
    if sid is not None:
        here = f'{here} (Sid "{sid}")'
    if "Principal" in item or "NotPrincipal" in item:
        raise PolicyError(
            f"{here}: identity-based policies have no Principal or NotPrincipal element (the "
            "principal is the one the policy is attached to)"
        )
    _check_object(item, _STATEMENT_ELEMENTS, here, "statement")
    effect_text = item.get("Effect")
    if effect_text not in ("Allow", "Deny"):
        raise PolicyError(f'{here}: Effect must be "Allow" or "Deny", not {_show(effect_text)}')
    effect = Effect(effect_text)

    action_key = _one_of(item, "Action", "NotAction", here)
    actions = tuple(
        _action(value, here, action_key) for value in _strings(item[action_key], here, action_key)
    )
    resource_key = _one_of(item, "Resource", "NotResource", here)
    resources: list[ArnPattern] = []
    for value in _strings(item[resource_key], here, resource_key):
        try:
            resources.append(ArnPattern(value, variables=variables, known_keys=known_keys))
        except ValueError as error:
            raise PolicyError(f"{here}: {resource_key} {error}") from None
    conditions = _conditions(item.get("Condition"), here, variables, known_keys)
    return Statement(
        StatementRef(policy_index, index, sid),
        effect,
        actions,
        action_key == "NotAction",
        tuple(resources),
        resource_key == "NotResource",
        conditions,
    )


def _action(value: str, where: str, element: str) -> Wildcard:
    if value != "*" and not _ACTION.fullmatch(value):
        raise PolicyError(
            f"{where}: {element} {_show(value)} is not '*' or service:action "
            "(e.g. sagemaker:InvokeEndpoint, sagemaker:Describe*)"
        )
    tokens = parse_template(value, wildcards=True, variables=False, known_keys={})
    return Wildcard(tokens, fold=True)


def _conditions(
    block: object, where: str, variables: bool, known_keys: Mapping[str, str]
) -> tuple[Condition, ...]:
    if block is None:
        return ()
    if not isinstance(block, dict):
        raise PolicyError(f"{where}: Condition must be an object of operator -> {{key: values}}")
    _check_duplicates(block, where, "Condition")
    if len(block) > MAX_CONDITION_OPERATORS:
        raise PolicyError(f"{where}: Condition has more than {MAX_CONDITION_OPERATORS} operators")
    conditions: list[Condition] = []
    for operator, keyed in block.items():
        if not isinstance(keyed, dict) or not keyed:
            raise PolicyError(
                f"{where}: Condition operator {operator!r} must map condition keys to values"
            )
        _check_duplicates(keyed, where, f"Condition {operator!r}")
        if len(keyed) > MAX_CONDITION_KEYS:
            raise PolicyError(
                f"{where}: Condition {operator!r} has more than {MAX_CONDITION_KEYS} keys"
            )
        for key, raw in keyed.items():
            values = _strings(raw, where, f"Condition {operator} {key!r}")
            try:
                conditions.append(
                    parse_condition(
                        operator, key, values, variables=variables, known_keys=known_keys
                    )
                )
            except ValueError as error:
                raise PolicyError(f"{where}: {error}") from None
    return tuple(conditions)


def _one_of(item: Mapping[str, object], name: str, negated: str, where: str) -> str:
    if (name in item) == (negated in item):
        raise PolicyError(f"{where}: give exactly one of {name} and {negated}")
    return name if name in item else negated


def _strings(raw: object, where: str, element: str) -> tuple[str, ...]:
    """A single value or a list, as IAM allows everywhere; numbers and booleans as text."""
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise PolicyError(f"{where}: {element} is an empty list")
    if len(items) > MAX_ELEMENT_VALUES:
        raise PolicyError(f"{where}: {element} has more than {MAX_ELEMENT_VALUES} values")
    out: list[str] = []
    for value in items:
        if isinstance(value, bool):
            out.append("true" if value else "false")
        elif isinstance(value, str):
            out.append(value)
        elif isinstance(value, int | float):
            out.append(str(value))
        else:
            raise PolicyError(f"{where}: {element} values must be strings, not {_show(value)}")
    return tuple(out)


def _check_object(
    obj: Mapping[str, object], allowed: tuple[str, ...], where: str, what: str
) -> None:
    _check_duplicates(obj, where, what)
    for key in obj:
        if key not in allowed:
            hint = next((a for a in allowed if a.lower() == key.lower()), None)
            tip = f" (did you mean {hint!r}? element names are case-sensitive)" if hint else ""
            raise PolicyError(
                f"{where}: unknown {what} element {key!r}{tip}; allowed: {', '.join(allowed)}"
            )


def _check_duplicates(obj: object, where: str, what: str) -> None:
    duplicates = getattr(obj, "duplicates", ())
    if duplicates:
        raise PolicyError(f"{where}: {what} has key {duplicates[0]!r} more than once")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
