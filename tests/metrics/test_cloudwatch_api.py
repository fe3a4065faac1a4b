"""CloudWatch's rules over a real history: what each operation answers and refuses.

Params here are what the wire adapter hands over after checking the model (timestamps in
epoch seconds); the protocols themselves are tested against a real server in
tests/http/test_cloudwatch*.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from polyhost.errors import (
    InvalidNextToken,
    InvalidParameterCombination,
    InvalidParameterValue,
    MissingParameter,
    ServiceError,
)
from polyhost.metrics import catalog
from polyhost.metrics.cell import Cell
from polyhost.metrics.cloudwatch_api import CloudWatchApi
from polyhost.metrics.history import MetricsHistory
from polyhost.metrics.query import MetricId, dimensions

T0 = 1_699_999_980  # a minute boundary
NOW = T0 + 600
DIMS = [
    {"Name": "EndpointName", "Value": "ep"},
    {"Name": "VariantName", "Value": "AllTraffic"},
    {"Name": "ContainerName", "Value": "a"},
]
CALLS = MetricId(
    "AWS/SageMaker", "Invocations", dimensions(**{d["Name"]: d["Value"] for d in DIMS})
)
CPU = MetricId("/aws/sagemaker/Endpoints", "CPUUtilization", CALLS.dimensions)


@pytest.fixture
def history() -> MetricsHistory:
    history = MetricsHistory(clock=lambda: T0)
    for slot in range(60):  # ten minutes: slot n has n + 1 invocations
        history.record(
            T0 + 10 * slot, [(CALLS, catalog.INVOCATIONS, Cell.of_binary(slot + 1, slot + 1))]
        )
        history.record(T0 + 10 * slot, [(CPU, catalog.CPU, Cell.of_value(float(slot)))])
    return history


@pytest.fixture
def api(history: MetricsHistory) -> CloudWatchApi:
    return CloudWatchApi(history, clock=lambda: NOW)


def statistics(api: CloudWatchApi, **params: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "Namespace": "AWS/SageMaker",
        "MetricName": "Invocations",
        "Dimensions": DIMS,
        "StartTime": T0,
        "EndTime": T0 + 600,
        "Period": 60,
        "Statistics": ["Sum"],
    }
    request.update(params)
    return api.get_metric_statistics({k: v for k, v in request.items() if v is not None})


def query(
    query_id: str, name: str = "Invocations", stat: str = "Sum", period: int = 60, **extra: Any
) -> dict[str, Any]:
    namespace = "AWS/SageMaker" if name == "Invocations" else "/aws/sagemaker/Endpoints"
    return {
        "Id": query_id,
        "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": DIMS},
            "Period": period,
            "Stat": stat,
        },
        **extra,
    }


def data(api: CloudWatchApi, queries: list[dict[str, Any]], **params: Any) -> dict[str, Any]:
    return api.get_metric_data(
        {"MetricDataQueries": queries, "StartTime": T0, "EndTime": T0 + 600, **params}
    )


def refused(kind: type[ServiceError], call: Callable[[], object], *words: str) -> None:
    with pytest.raises(kind) as caught:
        call()
    for word in words:
        assert word in caught.value.message


# -- GetMetricStatistics --------------------------------------------------------------------------
def test_statistics_per_minute_as_asked(api: CloudWatchApi) -> None:
    answer = statistics(api, Statistics=["Sum", "SampleCount", "Average", "Minimum", "Maximum"])
    assert answer["Label"] == "Invocations"
    points = answer["Datapoints"]
    assert len(points) == 10
    first = points[0]
    assert first["Timestamp"] == T0
    assert first["Sum"] == sum(range(1, 7)) == first["SampleCount"]
    assert (first["Average"], first["Minimum"], first["Maximum"], first["Unit"]) == (
        1.0,
        1.0,
        1.0,
        "None",
    )
    assert sum(p["Sum"] for p in points) == sum(range(1, 61))


def test_only_the_statistics_asked_for_are_returned(api: CloudWatchApi) -> None:
    (point, *_) = statistics(
        api,
        Statistics=["Maximum"],
        MetricName="CPUUtilization",
        Namespace="/aws/sagemaker/Endpoints",
    )["Datapoints"]
    assert set(point) == {"Timestamp", "Maximum", "Unit"}
    assert point["Unit"] == "Percent"


def test_percentiles_are_keyed_as_asked(api: CloudWatchApi) -> None:
    answer = statistics(
        api,
        Statistics=None,
        ExtendedStatistics=["p50", "p99.9"],
        Namespace="/aws/sagemaker/Endpoints",
        MetricName="CPUUtilization",
        Period=600,
    )
    (point,) = answer["Datapoints"]
    assert set(point["ExtendedStatistics"]) == {"p50", "p99.9"}
    assert point["ExtendedStatistics"]["p50"] == pytest.approx(29.0, rel=0.01)
    assert point["ExtendedStatistics"]["p99.9"] == pytest.approx(59.0, rel=0.01)


def test_start_time_is_rounded_down_as_cloudwatch_does(api: CloudWatchApi) -> None:
    points = statistics(api, StartTime=T0 + 94, EndTime=T0 + 240)["Datapoints"]
    assert [p["Timestamp"] for p in points] == [T0 + 60, T0 + 120, T0 + 180]
    ten = statistics(api, StartTime=T0 + 94, EndTime=T0 + 120, Period=10)["Datapoints"]
    assert [p["Timestamp"] for p in ten] == [T0 + 90, T0 + 100, T0 + 110]


def test_the_namespace_without_its_slash_finds_the_resource_metrics(api: CloudWatchApi) -> None:
    with_slash = statistics(api, Namespace="/aws/sagemaker/Endpoints", MetricName="CPUUtilization")
    without = statistics(api, Namespace="aws/sagemaker/Endpoints", MetricName="CPUUtilization")
    assert with_slash["Datapoints"] == without["Datapoints"] != []


def test_another_unit_or_unknown_metric_answers_no_datapoints(api: CloudWatchApi) -> None:
    assert statistics(api, Unit="Seconds")["Datapoints"] == []
    assert statistics(api, Unit="None")["Datapoints"] != []
    assert statistics(api, Dimensions=DIMS[:2])["Datapoints"] == []


def test_statistics_refusals_say_what_to_fix(api: CloudWatchApi) -> None:
    refused(
        InvalidParameterCombination,
        lambda: statistics(api, Statistics=None),
        "Statistics or ExtendedStatistics",
    )
    refused(
        InvalidParameterCombination, lambda: statistics(api, ExtendedStatistics=["p99"]), "not both"
    )
    refused(
        InvalidParameterValue,
        lambda: statistics(api, Statistics=None, ExtendedStatistics=["tm99"]),
        "tm99",
        "p99.9",
    )
    refused(
        InvalidParameterValue,
        lambda: statistics(api, Statistics=None, ExtendedStatistics=["p100.5"]),
        "p100.5",
    )
    refused(
        InvalidParameterValue,
        lambda: statistics(api, Period=45),
        "10, 20, 30 or a multiple of 60",
        "45",
    )
    refused(InvalidParameterValue, lambda: statistics(api, Period=90), "90")
    refused(
        InvalidParameterValue, lambda: statistics(api, StartTime=T0 + 600), "StartTime must be less"
    )
    refused(
        InvalidParameterCombination,
        lambda: statistics(api, StartTime=T0 - 86_400, Period=60),
        "You have requested up to 1,450 datapoints, which exceeds the limit of 1,440",
    )
    refused(
        InvalidParameterValue,
        lambda: statistics(api, Dimensions=[*DIMS, {"Name": "EndpointName", "Value": "x"}]),
        "EndpointName appears twice",
    )


def test_exactly_1440_datapoints_are_allowed(api: CloudWatchApi) -> None:
    assert statistics(api, StartTime=T0 - 86_400 + 600, Period=60)["Datapoints"]


# -- GetMetricData --------------------------------------------------------------------------------
def test_several_queries_with_labels_newest_first_by_default(api: CloudWatchApi) -> None:
    answer = data(
        api, [query("calls"), query("cpu", "CPUUtilization", "Maximum", 300, Label="CPU max")]
    )
    calls, cpu = answer["MetricDataResults"]
    assert (calls["Id"], calls["Label"], cpu["Id"], cpu["Label"]) == (
        "calls",
        "Invocations",
        "cpu",
        "CPU max",
    )
    assert list(calls["Timestamps"]) == [T0 + 60 * i for i in reversed(range(10))]
    assert calls["Values"][-1] == 21.0
    assert cpu["Values"] == [59.0, 29.0]
    assert calls["StatusCode"] == cpu["StatusCode"] == "Complete"
    assert "NextToken" not in answer


def test_ascending_scan_and_percentile_stats(api: CloudWatchApi) -> None:
    (cpu,) = data(api, [query("cpu", "CPUUtilization", "p90", 600)], ScanBy="TimestampAscending")[
        "MetricDataResults"
    ]
    assert cpu["Values"] == [pytest.approx(53.0, rel=0.01)]
    (calls,) = data(api, [query("c", period=10)], ScanBy="TimestampAscending")["MetricDataResults"]
    assert calls["Values"] == [float(n) for n in range(1, 61)]


def test_max_datapoints_pages_across_queries(api: CloudWatchApi) -> None:
    queries = [query("calls", period=120), query("cpu", "CPUUtilization", "Average", 120)]
    seen: dict[str, list[float]] = {"calls": [], "cpu": []}
    token = None
    pages = 0
    while True:
        extra = {"NextToken": token} if token else {}
        answer = data(api, queries, MaxDatapoints=3, ScanBy="TimestampAscending", **extra)
        pages += 1
        for result in answer["MetricDataResults"]:
            seen[result["Id"]] += result["Values"]
        token = answer.get("NextToken")
        if token is None:
            assert all(r["StatusCode"] == "Complete" for r in answer["MetricDataResults"])
            break
        assert any(r["StatusCode"] == "PartialData" for r in answer["MetricDataResults"])
    assert pages == 4  # 10 points, 3 a page
    whole = data(api, queries, ScanBy="TimestampAscending")["MetricDataResults"]
    assert seen == {r["Id"]: r["Values"] for r in whole}


def test_a_token_works_only_with_its_own_request(api: CloudWatchApi) -> None:
    token = data(api, [query("calls")], MaxDatapoints=2)["NextToken"]
    refused(
        InvalidNextToken,
        lambda: data(api, [query("other")], MaxDatapoints=2, NextToken=token),
        "different request",
    )
    refused(
        InvalidNextToken,
        lambda: data(api, [query("calls")], MaxDatapoints=2, NextToken="garbage!"),
        "not valid",
    )


def test_return_data_false_is_left_out(api: CloudWatchApi) -> None:
    answer = data(api, [query("calls"), query("hidden", ReturnData=False)])
    assert [r["Id"] for r in answer["MetricDataResults"]] == ["calls"]


def test_query_refusals_say_what_to_fix(api: CloudWatchApi) -> None:
    refused(
        InvalidParameterValue,
        lambda: data(api, [{"Id": "m", "Expression": "SUM(METRICS())"}]),
        "metric math",
        "MetricStat",
    )
    refused(
        InvalidParameterCombination,
        lambda: data(api, [{**query("m"), "Expression": "m * 2"}]),
        "both MetricStat and Expression",
    )
    refused(
        MissingParameter, lambda: data(api, [{"Id": "m"}]), "MetricDataQueries.member.1.MetricStat"
    )
    refused(InvalidParameterValue, lambda: data(api, [query("Calls")]), "Calls", "lowercase letter")
    refused(InvalidParameterValue, lambda: data(api, [query("a-b")]), "a-b")
    refused(
        InvalidParameterValue,
        lambda: data(api, [query("q"), query("q")]),
        "The Id q is used by more than one query",
    )
    refused(InvalidParameterValue, lambda: data(api, []), "1 to 500 queries")
    refused(
        InvalidParameterValue, lambda: data(api, [query(f"q{i}") for i in range(501)]), "not 501"
    )
    refused(InvalidParameterValue, lambda: data(api, [query("q", stat="IQM")]), "IQM", "p99")
    refused(
        InvalidParameterValue,
        lambda: data(api, [query("q", period=7)]),
        "MetricDataQueries.member.1.MetricStat.Period",
    )
    refused(
        InvalidParameterValue, lambda: data(api, [query("q")], MaxDatapoints=0), "MaxDatapoints"
    )
    refused(
        InvalidParameterValue, lambda: data(api, [query("q")], EndTime=T0), "StartTime must be less"
    )
    no_name = query("q")
    del no_name["MetricStat"]["Metric"]["MetricName"]
    refused(MissingParameter, lambda: data(api, [no_name]), "MetricStat.Metric.MetricName")


# -- ListMetrics ----------------------------------------------------------------------------------
def names(answer: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["Namespace"], m["MetricName"]) for m in answer["Metrics"]]


def test_list_filters_by_namespace_name_and_dimensions(api: CloudWatchApi) -> None:
    assert names(api.list_metrics({})) == [
        ("/aws/sagemaker/Endpoints", "CPUUtilization"),
        ("AWS/SageMaker", "Invocations"),
    ]
    assert names(api.list_metrics({"Namespace": "aws/sagemaker/Endpoints"})) == [
        ("/aws/sagemaker/Endpoints", "CPUUtilization")
    ]
    assert names(api.list_metrics({"MetricName": "Invocations"})) == [
        ("AWS/SageMaker", "Invocations")
    ]
    assert len(api.list_metrics({"Dimensions": [{"Name": "ContainerName"}]})["Metrics"]) == 2
    assert (
        len(api.list_metrics({"Dimensions": [{"Name": "ContainerName", "Value": "b"}]})["Metrics"])
        == 0
    )
    assert len(api.list_metrics({"Dimensions": [{"Name": "InstanceId"}]})["Metrics"]) == 0
    (metric,) = api.list_metrics({"MetricName": "Invocations"})["Metrics"]
    assert metric["Dimensions"] == sorted(DIMS, key=lambda d: d["Name"])


def test_recently_active_means_the_last_three_hours(history: MetricsHistory) -> None:
    later = CloudWatchApi(history, clock=lambda: T0 + 600 + 3 * 3600 + 1)
    assert later.list_metrics({"RecentlyActive": "PT3H"})["Metrics"] == []
    assert len(later.list_metrics({})["Metrics"]) == 2


def test_list_pages_by_500_with_a_token() -> None:
    history = MetricsHistory(clock=lambda: T0)
    for index in range(1_234):
        metric = MetricId("AWS/SageMaker", "Invocations", dimensions(EndpointName=f"ep{index:04d}"))
        history.record(T0, [(metric, catalog.INVOCATIONS, Cell.of_binary(1, 1))])
    api = CloudWatchApi(history, clock=lambda: T0)
    listed: list[str] = []
    token = None
    sizes = []
    while True:
        answer = api.list_metrics({"NextToken": token} if token else {})
        sizes.append(len(answer["Metrics"]))
        listed += [m["Dimensions"][0]["Value"] for m in answer["Metrics"]]
        token = answer.get("NextToken")
        if token is None:
            break
    assert sizes == [500, 500, 234]
    assert listed == [f"ep{i:04d}" for i in range(1_234)]
    refused(
        InvalidParameterValue, lambda: api.list_metrics({"NextToken": "not-a-token"}), "NextToken"
    )
