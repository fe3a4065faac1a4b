"""docs/grafana/polyhost-dashboard.json asks only for series a real server exports.

Every PromQL expression of the dashboard (panel targets and variable queries) is taken apart
into the metric names and label names it uses; each must be one that a real polyhost server's
/metrics (on its admin listener) shows after a few invocations. A renamed series then fails
here instead of leaving a panel empty.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.support.endpoints import deploy, echo_container, invoke
from tests.support.server import PolyhostProcess

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana" / "polyhost-dashboard.json"

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_VARIABLE = re.compile(r"\$\{?\w+\}?")
_IDENTIFIER = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_LABEL_MATCHER = re.compile(r"\s*([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, labels, keywords left out)."""
    text = _VARIABLE.sub(" ", _STRING.sub('""', expr))
    text = _GROUPING.sub(" ", _RANGE.sub(" ", _MATCHERS.sub(" ", text)))
    return {
        name
        for name, call in _IDENTIFIER.findall(text)
        if not call and name.lower() not in _KEYWORDS
    }


def label_names(expr: str) -> set[str]:
    """The label names an expression matches on or groups by."""
    text = _STRING.sub('""', expr)
    labels: set[str] = set()
    for matchers in _MATCHERS.findall(text):
        labels.update(_LABEL_MATCHER.findall(matchers))
    for grouping in _GROUPING.findall(text):
        labels.update(part.strip() for part in grouping.split(",") if part.strip())
    return labels


def dashboard_queries() -> tuple[list[str], set[str]]:
    """Every PromQL expression of the dashboard (panel targets, the selectors of its variables'
    `label_values` queries), and the labels those variables list."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    listed: set[str] = set()
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        query = query["query"] if isinstance(query, dict) else query
        found = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
        assert found, query
        queries.append(found.group(1))
        listed.add(found.group(2))
    return queries, listed


@pytest.fixture(scope="module")
def exported(server: PolyhostProcess) -> Iterator[tuple[set[str], set[str]]]:
    """(sample names, label names) a real server exposes after a few invocations."""
    sagemaker, runtime = server.sagemaker(), server.runtime()
    deploy(sagemaker, "graphed", [echo_container("a"), echo_container("b")], mode="Direct")
    for hostname in ("a", "b", "a"):
        invoke(runtime, "graphed", b"x", TargetContainerHostname=hostname)
    with pytest.raises(ClientError):
        invoke(runtime, "graphed", b"x", TargetContainerHostname="b", CustomAttributes="status=500")
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=30) as answer:
        text = answer.read().decode()
    names: set[str] = set()
    labels: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.add(sample.name)
            labels.update(sample.labels)
    yield names, labels


def test_the_extraction_finds_metrics_and_labels_only() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, pod) (rate(a_bucket{job=~"x{1}", le!=""}'
        "[$__rate_interval]))) / clamp_min(b_total offset 5m, 1e-9) and on(pod) c"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}
    assert label_names(expr) == {"le", "pod", "job"}


def test_every_dashboard_query_names_an_exported_series(
    exported: tuple[set[str], set[str]],
) -> None:
    names, labels = exported
    queries, listed = dashboard_queries()
    used = set().union(*(metric_names(q) for q in queries))
    assert len(used) >= 8, used  # the dashboard does show polyhost's series
    assert used <= names, f"not exported: {sorted(used - names)}"
    used_labels = listed.union(*(label_names(q) for q in queries))
    assert used_labels <= labels | {"le"}, f"no such label: {sorted(used_labels - labels)}"


def test_the_dashboard_reads_from_a_prometheus_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
