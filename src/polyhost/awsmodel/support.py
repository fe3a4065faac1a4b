"""Accepted means honoured: for every member of every input shape a service serves, whether
polyhost honours it, echoes it, or refuses it.

An interface that accepts a member promises its behaviour. A caller who turns on data capture
for an audit, or asks for a 10% canary, and gets a 200 believes it happened; so a member
polyhost cannot honour is refused, naming the member and the feature, rather than stored and
ignored. Each service keeps one declarative table (operation -> member path -> `Support`), and
this module applies any of them the same way, before the operation runs:

- **honoured**: the operation does what the member asks.
- **echoed**: accepted, stored and shown by Describe, because on one machine it legitimately
  means nothing (the KMS key of an instance's storage volume, when there is no such volume);
  the reason is part of the entry and of the docs.
- **refused**: present, it is refused; `accepts` lists values that are honoured even so (the
  one routing strategy polyhost implements, `False` for a feature that is off), and `unless`
  names a server capability under which the member is honoured (network isolation, when the
  server isolates instances).

A refused member is refused only when it says something: absent, null, an empty list, map or
structure mean what leaving it out means, and pass (the SageMaker SDK sends `Tags: []`).

Member paths are the model's member names joined by `.`, `[]` after a list and `{}` after a
map whose elements are walked (`ProductionVariants[].ServerlessConfig`). An entry that echoes or
refuses a structure covers everything under it; an honoured structure or list of structures
needs an entry for each of its members. `coverage` walks the model and lists what has no entry,
so a member a new botocore adds cannot slip through unnoticed (the tests run it).

Applying a table needs no model: the request was validated against it already, and the walk
follows the table's paths through the request's values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from polyhost.awsmodel.shapes import Schema, Shape

Status = Literal["honoured", "echoed", "refused"]
UNSUPPORTED_DOC = "docs/unsupported.md"


@dataclass(frozen=True)
class Support:
    """What polyhost does with one member.

    `why`: for honoured, what polyhost does with it; for echoed, why it means nothing here; for
    refused, the feature's name as a refusal says it (`request tracing`).
    `accepts`: refused only, values honoured anyway (compared with their JSON type).
    `unless`: refused only, the server capability under which the member is honoured.
    `own_message`: refused only, the operation refuses it itself, in that service's words
    (checked by its tests); the generic walk leaves it alone.
    """

    status: Status
    why: str
    accepts: tuple[Any, ...] = ()
    unless: str | None = None
    own_message: bool = False


def honoured(why: str) -> Support:
    return Support("honoured", why)


def echoed(why: str) -> Support:
    return Support("echoed", why)


def refused(
    feature: str,
    *,
    accepts: tuple[Any, ...] = (),
    unless: str | None = None,
    own_message: bool = False,
) -> Support:
    return Support("refused", feature, accepts=accepts, unless=unless, own_message=own_message)


OperationTable = Mapping[str, Support]
ServiceTable = Mapping[str, OperationTable]


@dataclass(frozen=True)
class Refusal:
    """One refused member found in a request."""

    where: str  # the member in this request: `ProductionVariants.1.ServerlessConfig`
    member: str  # its table path: `ProductionVariants[].ServerlessConfig`
    support: Support
    value: Any

    def text(self) -> str:
        """`ProductionVariants.1.ServerlessConfig (serverless inference)`; with `accepts`, the
        value given and what is taken instead."""
        feature = self.support.why
        if self.support.accepts:
            taken = " or ".join(_json(v) for v in self.support.accepts)
            return f"{self.where} = {_json(self.value)} ({feature}; it takes only {taken})"
        return f"{self.where} ({feature})"


def _json(value: Any) -> str:
    if isinstance(value, str):
        return value
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _nothing(value: Any) -> bool:
    """A value that says no more than leaving the member out."""
    return value is None or (isinstance(value, list | dict) and not value)


def _accepted(value: Any, accepts: tuple[Any, ...]) -> bool:
    # `True == 1` in Python; a boolean member given 1 is not the value listed.
    return any(type(value) is type(item) and value == item for item in accepts)


def _steps(path: str) -> list[tuple[str, str]]:
    """`A[].B` -> [("A", "[]"), ("B", "")]."""
    steps: list[tuple[str, str]] = []
    for part in path.split("."):
        if part.endswith(("[]", "{}")):
            steps.append((part[:-2], part[-2:]))
        else:
            steps.append((part, ""))
    return steps


def _values_at(value: Any, steps: list[tuple[str, str]], where: str) -> Iterator[tuple[str, Any]]:
    """(where in the request, value) of every value a table path reaches."""
    if not steps:
        yield where, value
        return
    if not isinstance(value, dict):
        return
    (name, walk), rest = steps[0], steps[1:]
    if name not in value:
        return
    item = value[name]
    here = f"{where}.{name}" if where else name
    if walk == "[]":
        if isinstance(item, list):
            for index, element in enumerate(item):
                yield from _values_at(element, rest, f"{here}.{index + 1}")
    elif walk == "{}":
        if isinstance(item, dict):
            for key, element in item.items():
                yield from _values_at(element, rest, f"{here}.{key}")
    else:
        yield from _values_at(item, rest, here)


def refusals(
    table: OperationTable, params: Mapping[str, Any], capabilities: frozenset[str] = frozenset()
) -> list[Refusal]:
    """Every refused member `params` gives, in the table's order (the model's)."""
    found: list[Refusal] = []
    for member, support in table.items():
        if support.status != "refused" or support.own_message:
            continue
        if support.unless is not None and support.unless in capabilities:
            continue
        for where, value in _values_at(dict(params), _steps(member), ""):
            if _nothing(value) or _accepted(value, support.accepts):
                continue
            found.append(Refusal(where, member, support, value))
    return found


def refusal_message(operation: str, found: list[Refusal]) -> str:
    """`polyhost does not support ExplainerConfig (SageMaker Clarify online explainability)
    yet: remove it from CreateEndpointConfig, or see docs/unsupported.md`."""
    items = "; ".join(refusal.text() for refusal in found)
    pronoun = "it" if len(found) == 1 else "them"
    return (
        f"polyhost does not support {items} yet: remove {pronoun} from {operation}, or see "
        f"{UNSUPPORTED_DOC}"
    )


# -- coverage: the table against the model ----------------------------------------------------


def member_paths(schema: Schema, shape: Shape, prefix: str = "") -> Iterator[str]:
    """Every member path under `shape`, parents before children, in model order."""
    yield from _member_paths(schema, shape, prefix, frozenset())


def _member_paths(schema: Schema, shape: Shape, prefix: str, seen: frozenset[str]) -> Iterator[str]:
    if shape.type != "structure" or shape.name in seen:
        return  # a recursive shape's members were listed where it first appeared
    for member, target in shape.members.items():
        path = f"{prefix}.{member}" if prefix else member
        yield path
        inner, suffix = schema.shape(target), ""
        while inner.type in ("list", "map"):
            element = inner.member if inner.type == "list" else inner.value
            if element is None:
                break
            suffix += "[]" if inner.type == "list" else "{}"
            inner = schema.shape(element)
        if inner.type == "structure":
            yield from _member_paths(schema, inner, path + suffix, seen | {shape.name})


def _covered_by(path: str, table: OperationTable) -> str | None:
    """The echoed or refused ancestor whose entry covers `path`, if any."""
    parts = path.split(".")
    for end in range(1, len(parts)):
        ancestor = ".".join(parts[:end])
        while ancestor.endswith(("[]", "{}")):
            ancestor = ancestor[:-2]
        support = table.get(ancestor)
        if support is not None and support.status != "honoured":
            return ancestor
    return None


@dataclass(frozen=True)
class Coverage:
    """A table checked against the model: what lacks an entry, what the model no longer has,
    and entries under an echoed or refused member (which already covers them)."""

    missing: list[str]
    stale: list[str]
    redundant: list[str]

    @property
    def complete(self) -> bool:
        return not (self.missing or self.stale or self.redundant)


def coverage(schema: Schema, operations: Mapping[str, OperationTable]) -> Coverage:
    """Check every operation's table against its input shape (`operation: member path`)."""
    missing: list[str] = []
    stale: list[str] = []
    redundant: list[str] = []
    for operation in sorted(set(schema.operations) | set(operations)):
        table = operations.get(operation, {})
        shape = schema.input(operation) if operation in schema.operations else None
        paths = list(member_paths(schema, shape)) if shape is not None else []
        known = set(paths)
        for path in paths:
            if _covered_by(path, table) is not None:
                if path in table:
                    redundant.append(f"{operation}: {path}")
            elif path not in table:
                missing.append(f"{operation}: {path}")
        stale += [f"{operation}: {path}" for path in table if path not in known]
    return Coverage(missing, stale, redundant)


# -- the docs table ---------------------------------------------------------------------------


def _status_text(support: Support, capabilities: Mapping[str, str]) -> str:
    if support.status != "refused":
        return support.status
    extras: list[str] = []
    if support.accepts:
        extras.append(f"{' or '.join(_json(v) for v in support.accepts)} honoured")
    if support.unless is not None:
        extras.append(f"honoured {capabilities.get(support.unless, support.unless)}")
    return f"refused ({'; '.join(extras)})" if extras else "refused"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_table(
    title: str,
    schema: Schema,
    operations: Mapping[str, OperationTable],
    capabilities: Mapping[str, str] | None = None,
) -> str:
    """One service's section of the docs: per operation, each member with an entry, its status
    and why. Members under an echoed or refused one are covered by it and not listed."""
    names = capabilities or {}
    lines = [f"## {title}", ""]
    for operation, table in operations.items():
        lines += [f"### {operation}", "", "| member | status | why |", "| --- | --- | --- |"]
        shape = schema.input(operation)
        order = list(member_paths(schema, shape)) if shape is not None else []
        for path in [p for p in order if p in table]:
            support = table[path]
            why = support.why
            if support.status != "honoured" and _covered_children(path, order):
                why += " (and everything under it)"
            lines.append(f"| `{path}` | {_status_text(support, names)} | {_cell(why)} |")
        lines.append("")
    return "\n".join(lines)


def _covered_children(path: str, order: list[str]) -> bool:
    return any(p.startswith(path + ".") or p.startswith(path + "[]") for p in order)


def counts(operations: Mapping[str, OperationTable]) -> dict[Status, int]:
    """How many entries of each status a service's table has."""
    total: dict[Status, int] = {"honoured": 0, "echoed": 0, "refused": 0}
    for table in operations.values():
        for support in table.values():
            total[support.status] += 1
    return total
