"""RESULTS.md sections are replaced in place and kept in scenario order."""

from __future__ import annotations

from pathlib import Path

from bench.report import ResultsFile, Section, markdown_table


def test_a_rerun_replaces_only_its_own_section(tmp_path: Path) -> None:
    results = ResultsFile(tmp_path / "RESULTS.md", ["machine", "one", "two"])
    results.write("two", "## two\n\nfirst numbers\n")
    results.write("one", "## one\n\nnumbers\n")
    results.write("two", "## two\n\nsecond numbers\n")
    text = results.path.read_text(encoding="utf-8")
    assert "first numbers" not in text
    assert text.index("## one") < text.index("## two") < text.index("second numbers")
    assert set(results.sections()) == {"one", "two"}


def test_a_missed_target_is_spelled_out() -> None:
    section = Section("x", "X")
    section.target("added p50", "0.4 ms", "≤ 0.3 ms", met=False)
    section.target("throughput", "60%", "≥ 50%", met=True)
    text = section.markdown()
    assert "- **MISSED**: added p50: 0.4 ms (target ≤ 0.3 ms)" in text
    assert "- met: throughput: 60% (target ≥ 50%)" in text


def test_tables_align_numbers_and_text() -> None:
    lines = markdown_table(["name", "req/s"], [["a", 1234.5], ["bb", 0.1234]])
    assert lines[2] == "| a    | 1,234 |"
    assert lines[3] == "| bb   | 0.123 |"
