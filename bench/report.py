"""RESULTS.md: one section per scenario, replaced in place when that scenario runs again.

Sections sit between `<!-- bench:KEY -->` markers and are kept in scenario order, so running a
single scenario updates its own numbers and leaves the others as they were measured (each
section says when and with which command).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

HEADER = """# polyhost benchmarks

Measured by `make bench` (every scenario, one run, one machine; it runs
`.venv/bin/python -m bench`) or one scenario at a time with `.venv/bin/python -m bench SCENARIO`
(`python -m bench --list` names them; `--profile` adds a py-spy profile of the server). The peers
run from their own virtual environments under `bench/work/venvs/`, installed on first use;
polyhost runs from the project's `.venv`. Raw numbers of each scenario are kept in
`bench/work/SCENARIO/results.json`, plots in `bench/plots/`.

Every number below was measured, targets included: a missed target reads **MISSED**. Each
section records when it ran, the load average of the machine at that moment and the exact
command. On a two-core machine that other work shares, p99 latencies and c=32 throughputs move
by tens of percent from run to run; the comparisons inside one section were measured
alternately, minutes apart, under the same conditions.
"""


@dataclass(frozen=True)
class Target:
    """A stated goal and whether the measurement met it."""

    what: str
    measured: str
    goal: str
    met: bool

    def line(self) -> str:
        verdict = "met" if self.met else "**MISSED**"
        return f"- {verdict}: {self.what}: {self.measured} (target {self.goal})"


@dataclass
class Section:
    key: str
    title: str
    lines: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    footer: list[str] = field(default_factory=list)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.lines.extend(markdown_table(headers, rows))
        self.lines.append("")

    def target(self, what: str, measured: str, goal: str, met: bool) -> None:
        self.targets.append(Target(what, measured, goal, met))

    def markdown(self) -> str:
        body = [f"## {self.title}", "", *self.lines]
        if self.targets:
            body += ["Targets:", "", *(t.line() for t in self.targets), ""]
        body += self.footer
        return "\n".join(body).rstrip() + "\n"


def fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [[fmt(value) for value in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    out = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells
    ]
    return out


_SECTION = re.compile(
    r"<!-- bench:(?P<key>[\w-]+) -->\n(?P<body>.*?)<!-- /bench:(?P=key) -->\n?", re.S
)


class ResultsFile:
    def __init__(self, path: Path, order: Sequence[str]) -> None:
        self.path = path
        self.order = list(order)

    def sections(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        text = self.path.read_text(encoding="utf-8")
        return {m.group("key"): m.group("body") for m in _SECTION.finditer(text)}

    def write(self, key: str, markdown: str) -> None:
        """Replace (or add) the section `key` and rewrite the file in scenario order."""
        sections = self.sections()
        sections[key] = markdown
        known = [k for k in self.order if k in sections]
        extra = [k for k in sections if k not in self.order]
        parts = [HEADER]
        for name in known + extra:
            parts.append(
                f"<!-- bench:{name} -->\n{sections[name].rstrip()}\n<!-- /bench:{name} -->\n"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("\n".join(parts), encoding="utf-8")
