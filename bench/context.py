"""What every scenario gets: where to work, where to write, how big to run, how it was called."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.machine import git_revision, load_average, now
from bench.report import ResultsFile, Section

BENCH_DIR = Path(__file__).resolve().parent


@dataclass
class Context:
    work_root: Path
    results: ResultsFile
    quick: bool = False
    profile: bool = False

    @property
    def plots_dir(self) -> Path:
        return self.results.path.parent / "plots"

    def work(self, scenario: str) -> Path:
        path = self.work_root / scenario
        path.mkdir(parents=True, exist_ok=True)
        return path

    def command(self, scenario: str) -> str:
        """The exact command that reruns this scenario alone (in this configuration)."""
        flags = " --quick" if self.quick else ""
        return f".venv/bin/python -m bench {scenario}{flags}"

    def begin(self, key: str, title: str) -> Section:
        section = Section(key, title)
        section.add(
            f"Run {now()} at git {git_revision()} (load average {load_average()}) with "
            f"`{self.command(key)}`; "
            f"full invocation `{' '.join(['python -m bench', *map(shlex.quote, sys.argv[1:])])}`.",
            "",
        )
        return section

    def plot(self, section: Section, name: str, caption: str) -> Path:
        """Path for a PNG of this section; also links it from the section."""
        self.plots_dir.mkdir(parents=True, exist_ok=True)
        path = self.plots_dir / f"{name}.png"
        relative = path.relative_to(self.results.path.parent)
        section.add(f"![{caption}]({relative.as_posix()})", "")
        return path

    def save_raw(self, scenario: str, data: object) -> Path:
        """The raw measurements of a scenario, as JSON in its work folder."""
        path = self.work(scenario) / "results.json"
        path.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
        return path
