"""The shared walk over botocore's models, for each of the three services' dialects."""

from __future__ import annotations

from typing import Any

import pytest

from polyhost.awsmodel.check import Checker, Dialect, Entry, parse_timestamp
from polyhost.awsmodel.shapes import load_schema
from polyhost.control.validation import SAGEMAKER, path_text
from polyhost.logs.params import LOGS, logs_message, logs_schema


def test_logs_members_follow_the_model() -> None:
    schema = logs_schema()
    shape = schema.input("FilterLogEvents")
    assert shape is not None
    typed, found = Checker(schema, LOGS).check(shape, {"logGroupName": "/a", "limit": 5, "x": 1})
    assert typed == {"logGroupName": "/a", "limit": 5}  # unknown members are dropped
    assert found == []


@pytest.mark.parametrize(
    ("operation", "params", "message"),
    [
        ("GetLogEvents", {}, "logStreamName is required."),
        ("GetLogEvents", {"logStreamName": "a", "limit": 0},
         "limit must be between 1 and 10000, not 0."),
        ("GetLogEvents", {"logStreamName": "a", "startTime": -1},
         "startTime must be between 0 and 9223372036854775807, not -1."),
        ("DescribeLogStreams", {"orderBy": "Size"},
         "orderBy must be one of LogStreamName, LastEventTime, not 'Size'."),
        ("FilterLogEvents", {"logStreamNames": ["a", None]}, "logStreamNames[1] is required."),
        ("FilterLogEvents", {"logStreamNames": {}}, "logStreamNames must be a list of strings, "
         "not dict."),
        ("FilterLogEvents", {"filterPattern": "x" * 1025},
         "filterPattern must be 0 to 1024 characters long, not 1025."),
        ("FilterLogEvents", {"unmask": "yes"}, "unmask must be true or false, not str 'yes'."),
        ("DescribeLogGroups", {"logGroupIdentifiers": ["é"]},
         "logGroupIdentifiers[0] 'é' does not match the pattern [\\w#+=/:,.@-]*."),
        ("DescribeLogGroups", {"nextToken": ""},
         "nextToken must be at least 1 characters long, not 0."),
    ],
)  # fmt: skip
def test_logs_messages(operation: str, params: dict[str, Any], message: str) -> None:
    schema = logs_schema()
    shape = schema.input(operation)
    assert shape is not None
    _, found = Checker(schema, LOGS).check(shape, params)
    assert len(found) == 1  # the first violation only
    assert logs_message(found[0]) == message


def test_sagemaker_collects_every_violation_with_camel_paths() -> None:
    schema = load_schema("sagemaker", ["CreateModel"])
    shape = schema.input("CreateModel")
    assert shape is not None
    params = {"ModelName": "a_b", "Containers": [None], "Tags": [{"Key": "k"}]}
    _, found = Checker(schema, SAGEMAKER).check(shape, params)
    paths = [path_text(v.path) for v in found]
    assert "modelName" in paths and "containers.1.member" in paths
    assert "tags.1.member.value" in paths


def test_map_entries_in_paths() -> None:
    assert path_text(("environment", Entry("K", 0, "value"), "x")) == "environment.K.x"


def test_first_only_stops_at_one() -> None:
    schema = load_schema("cloudwatch", ["GetMetricStatistics"])
    shape = schema.input("GetMetricStatistics")
    assert shape is not None
    _, every = Checker(schema, Dialect()).check(shape, {})
    _, first = Checker(schema, Dialect(first_only=True)).check(shape, {})
    assert len(every) > 1 and first == every[:1]


def test_textual_and_integral_floats() -> None:
    schema = load_schema("cloudwatch", ["GetMetricStatistics"])
    shape = schema.input("GetMetricStatistics")
    assert shape is not None
    params = {"Namespace": "n", "MetricName": "m", "StartTime": "2024-01-01T00:00:00Z",
              "EndTime": "1704070800", "Period": "60"}  # fmt: skip
    typed, found = Checker(schema, Dialect()).check(shape, params, textual=True)
    assert found == [] and typed["Period"] == 60 and typed["StartTime"] == 1704067200.0
    _, found = Checker(schema, Dialect()).check(shape, {**params, "Period": 60.0})
    assert [v.kind for v in found] == ["type"]
    _, found = Checker(schema, Dialect(integral_floats=True)).check(
        shape, {**params, "Period": 60.0}
    )
    assert found == []


def test_parse_timestamp() -> None:
    assert parse_timestamp(1.5) == 1.5
    assert parse_timestamp("1970-01-01T00:00:10Z") == 10.0
    assert parse_timestamp(10**400) is None
    assert parse_timestamp(float("nan")) is None
    assert parse_timestamp(True) is None
    assert parse_timestamp("yesterday") is None
