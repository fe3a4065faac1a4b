"""IAM's `*`/`?` wildcards and `${...}` policy variables, matched in linear time.

A policy string is parsed once, at load, into tokens: literal text, `*` (any run, also empty),
`?` (one character) and policy variables (`${aws:username}`, `${key, 'default'}`, and the
escapes `${*}`, `${?}`, `${$}` for a literal `*`, `?`, `$`). A variable's value is always
literal text: a `*` inside a user name never acts as a wildcard.

Matching never backtracks: a pattern is split at its stars into segments, the first must match
at the start, the last at the end, and every middle one is found leftmost-first between them
(leftmost-first is optimal when stars may absorb anything). That is O(len(text) * len(pattern))
at worst, so a pattern such as `*a*a*a*a*b` cannot be turned against the server by a long
header, as a backtracking regular expression could.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass


class Wild(enum.Enum):
    STAR = "*"
    ONE = "?"


@dataclass(frozen=True, slots=True)
class Variable:
    """`${key}` or `${key, 'default'}`; `key` is lowercased (IAM keys are case-insensitive)."""

    key: str
    default: str | None


Token = str | Wild | Variable
Tokens = tuple[Token, ...]
# What a variable's key resolves to: the values of the key in the request, or None.
Lookup = Callable[[str], tuple[str, ...] | None]

POLICY_VARIABLES_VERSION = "2012-10-17"
_VARIABLE = re.compile(r"\s*([^\s,'}]+)\s*(?:,\s*'([^']*)'\s*)?")
_ESCAPES = {"*": "*", "?": "?", "$": "$"}


class Unresolved(Exception):
    """A policy variable whose key the request does not carry and that has no default.

    IAM: "any attempt to match it fails and causes the statement to be invalid" - the statement
    then does not apply, for an Allow and for a Deny alike.
    """


def parse_template(
    text: str, *, wildcards: bool, variables: bool, known_keys: Mapping[str, str]
) -> Tokens:
    """Tokens of `text`; raises ValueError saying what is wrong (the caller says where).

    `wildcards` makes `*` and `?` special (Resource, Action, the `...Like` operators);
    `variables` is whether the policy's Version supports policy variables.
    """
    tokens: list[Token] = []
    literal: list[str] = []

    def flush() -> None:
        if literal:
            tokens.append("".join(literal))
            literal.clear()

    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "$" and text.startswith("${", i):
            if not variables:
                raise ValueError(
                    f"{_quote(text)} uses a policy variable, which needs "
                    f'"Version": "{POLICY_VARIABLES_VERSION}" in the policy (without it IAM '
                    "reads the text literally)"
                )
            end = text.find("}", i + 2)
            if end < 0:
                raise ValueError(f"{_quote(text)} has an unterminated policy variable (no '}}')")
            inner = text[i + 2 : end]
            if inner in _ESCAPES:
                literal.append(_ESCAPES[inner])
            else:
                flush()
                tokens.append(_variable(inner, text, known_keys))
            i = end + 1
        elif wildcards and char in "*?":
            flush()
            tokens.append(Wild(char))
            i += 1
        else:
            literal.append(char)
            i += 1
    flush()
    return tuple(tokens)


def _variable(inner: str, text: str, known_keys: Mapping[str, str]) -> Variable:
    match = _VARIABLE.fullmatch(inner)
    if match is None:
        raise ValueError(
            f"{_quote(text)} has a malformed policy variable ${{{inner}}}: write ${{key}} or "
            "${key, 'default'}"
        )
    key = match.group(1).lower()
    if key not in known_keys:
        raise ValueError(
            f"{_quote(text)} uses policy variable ${{{match.group(1)}}}, but requests carry no "
            f"such key; known keys: {', '.join(sorted(known_keys.values()))}"
        )
    return Variable(key, match.group(2))


def _quote(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def variable_keys(tokens: Tokens) -> frozenset[str]:
    return frozenset(t.key for t in tokens if isinstance(t, Variable))


def render(tokens: Tokens, lookup: Lookup) -> Tokens:
    """`tokens` with every variable replaced by its (literal) value; raises `Unresolved`."""
    out: list[Token] = []
    for token in tokens:
        if isinstance(token, Variable):
            values = lookup(token.key)
            if values is not None and len(values) == 1:
                out.append(values[0])
            elif token.default is not None:
                out.append(token.default)
            else:
                raise Unresolved(token.key)
        else:
            out.append(token)
    return tuple(out)


def literal_text(tokens: Tokens) -> str:
    """The text of variable-free tokens, wildcards as their characters."""
    return "".join(
        t.value if isinstance(t, Wild) else t for t in tokens if not isinstance(t, Variable)
    )


class _Segment:
    """A run between stars: plain text, or a fixed-length regex when it holds `?`."""

    __slots__ = ("length", "regex", "text")

    def __init__(self, items: list[str | Wild], fold: bool) -> None:
        parts = [i.lower() if fold and isinstance(i, str) else i for i in items]
        self.length = sum(1 if isinstance(p, Wild) else len(p) for p in parts)
        if any(isinstance(p, Wild) for p in parts):
            source = "".join("." if isinstance(p, Wild) else re.escape(p) for p in parts)
            self.regex: re.Pattern[str] | None = re.compile(source, re.DOTALL)
            self.text = ""
        else:
            self.regex = None
            self.text = "".join(p for p in parts if isinstance(p, str))

    def match_at(self, text: str, pos: int) -> bool:
        if self.regex is None:
            return text.startswith(self.text, pos)
        return self.regex.match(text, pos) is not None

    def find(self, text: str, start: int, end: int) -> int:
        if self.regex is None:
            return text.find(self.text, start, end)
        found = self.regex.search(text, start, end)
        return -1 if found is None else found.start()


class Wildcard:
    """A compiled `*`/`?` pattern (variables already rendered); `fold` ignores case."""

    __slots__ = ("_first", "_fold", "_last", "_middle", "_min_length", "_starred")

    def __init__(self, tokens: Tokens, *, fold: bool = False) -> None:
        segments: list[list[str | Wild]] = [[]]
        for token in tokens:
            if isinstance(token, Variable):
                raise TypeError("render the variables before compiling a Wildcard")
            if token is Wild.STAR:
                segments.append([])
            else:
                segments[-1].append(token)
        compiled = [_Segment(items, fold) for items in segments]
        self._fold = fold
        self._starred = len(compiled) > 1
        self._first = compiled[0]
        self._last = compiled[-1]
        self._middle = tuple(s for s in compiled[1:-1] if s.length)
        self._min_length = sum(s.length for s in compiled)

    def matches(self, text: str) -> bool:
        if self._fold:
            text = text.lower()
        n = len(text)
        first = self._first
        if not self._starred:
            return n == first.length and first.match_at(text, 0)
        if n < self._min_length or not first.match_at(text, 0):
            return False
        tail = n - self._last.length
        if not self._last.match_at(text, tail):
            return False
        pos = first.length
        for segment in self._middle:
            found = segment.find(text, pos, tail)
            if found < 0:
                return False
            pos = found + segment.length
        return True


@functools.lru_cache(maxsize=4096)
def wildcard(tokens: Tokens, fold: bool = False) -> Wildcard:
    """A compiled Wildcard, memoised: rendered variable patterns repeat across requests."""
    return Wildcard(tokens, fold=fold)


class Template:
    """A policy string that may hold variables; compiled once when it holds none."""

    __slots__ = ("_compiled", "fold", "keys", "tokens")

    def __init__(self, tokens: Tokens, *, fold: bool = False) -> None:
        self.tokens = tokens
        self.fold = fold
        self.keys = variable_keys(tokens)
        self._compiled = None if self.keys else Wildcard(tokens, fold=fold)

    def matches(self, text: str, lookup: Lookup) -> bool:
        """Wildcard match of `text`; raises `Unresolved` for a variable the request lacks."""
        if self._compiled is not None:
            return self._compiled.matches(text)
        return wildcard(render(self.tokens, lookup), self.fold).matches(text)

    def text(self, lookup: Lookup) -> str:
        """The literal text after rendering variables (for the `...Equals` operators)."""
        if not self.keys:
            return literal_text(self.tokens)
        return literal_text(render(self.tokens, lookup))


class ArnPattern:
    """A Resource/NotResource entry: `*`, or an ARN whose six parts match one by one.

    As IAM matches ARNs, a wildcard in one of the first five colon-separated parts (partition,
    service, region, account) never spans a colon; the sixth part, the resource, may hold
    colons (`log-group:NAME`) and is the only part where policy variables may appear.
    """

    __slots__ = ("_head", "_resource", "any", "keys")

    def __init__(self, text: str, *, variables: bool, known_keys: Mapping[str, str]) -> None:
        self.any = text == "*"
        self._head: tuple[Wildcard, ...] = ()
        self._resource: Template | None = None
        self.keys: frozenset[str] = frozenset()
        if self.any:
            return
        parts = text.split(":", 5)
        if len(parts) < 6 or parts[0] != "arn":
            raise ValueError(
                f"{_quote(text)} is neither '*' nor an ARN "
                "(arn:partition:service:region:account:resource, e.g. "
                "arn:aws:sagemaker:*:*:endpoint/*)"
            )
        for part in parts[:5]:
            if "${" in part:
                raise ValueError(
                    f"{_quote(text)} has a policy variable before the resource part of the "
                    "ARN; IAM allows them only after the fifth colon"
                )
        self._head = tuple(
            Wildcard(parse_template(p, wildcards=True, variables=False, known_keys=known_keys))
            for p in parts[:5]
        )
        tokens = parse_template(
            parts[5], wildcards=True, variables=variables, known_keys=known_keys
        )
        self._resource = Template(tokens)
        self.keys = self._resource.keys

    def matches(self, parts: list[str], lookup: Lookup) -> bool:
        """Whether the ARN split as `arn.split(":", 5)` matches; raises `Unresolved`."""
        if self.any:
            return True
        if len(parts) != 6 or self._resource is None:
            return False
        for pattern, part in zip(self._head, parts, strict=False):
            if not pattern.matches(part):
                return False
        return self._resource.matches(parts[5], lookup)
