"""ListModels / ListEndpointConfigs / ListEndpoints: pages, filters and order, on a real server."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.control.helpers import make_config, make_endpoint, make_model, raw_call, unique
from tests.support.errors import client_error
from tests.support.server import PolyhostProcess


@pytest.fixture(scope="module")
def seven_models(sagemaker: Any) -> tuple[str, list[str]]:
    """(marker, names in creation order) of seven models made for this module."""
    marker = unique("lst")
    names = [make_model(sagemaker, f"{marker}-{c}") for c in "dbfaceg"]
    return marker, names


def _models(server: PolyhostProcess, **params: Any) -> dict[str, Any]:
    status, body = raw_call(server, "ListModels", params)
    assert status == 200, body
    return body


def test_default_order_is_newest_first_with_ten_per_page(
    server: PolyhostProcess, seven_models: tuple[str, list[str]]
) -> None:
    marker, names = seven_models
    body = _models(server, NameContains=marker)
    assert [m["ModelName"] for m in body["Models"]] == names[::-1]
    assert "NextToken" not in body


def test_pages_follow_each_other(
    server: PolyhostProcess, seven_models: tuple[str, list[str]]
) -> None:
    marker, names = seven_models
    seen: list[str] = []
    sizes: list[int] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"NameContains": marker, "MaxResults": 3}
        if token:
            params["NextToken"] = token
        body = _models(server, **params)
        sizes.append(len(body["Models"]))
        seen += [m["ModelName"] for m in body["Models"]]
        token = body.get("NextToken")
        if token is None:
            break
    assert sizes == [3, 3, 1]
    assert seen == names[::-1]


def test_boto3_paginator(sagemaker: Any, seven_models: tuple[str, list[str]]) -> None:
    marker, names = seven_models
    paginator = sagemaker.get_paginator("list_models")
    pages = list(
        paginator.paginate(
            NameContains=marker,
            SortBy="Name",
            SortOrder="Ascending",
            PaginationConfig={"PageSize": 2},
        )
    )
    assert [len(p["Models"]) for p in pages] == [2, 2, 2, 1]
    assert [m["ModelName"] for p in pages for m in p["Models"]] == sorted(names)


@pytest.mark.parametrize(
    ("sort_by", "order"),
    [
        ("Name", "Ascending"),
        ("Name", "Descending"),
        ("CreationTime", "Ascending"),
        ("CreationTime", "Descending"),
    ],
)
def test_sort(
    server: PolyhostProcess, seven_models: tuple[str, list[str]], sort_by: str, order: str
) -> None:
    marker, names = seven_models
    expected = sorted(names) if sort_by == "Name" else list(names)
    if order == "Descending":
        expected.reverse()
    body = _models(server, NameContains=marker, SortBy=sort_by, SortOrder=order, MaxResults=4)
    rest = _models(
        server,
        NameContains=marker,
        SortBy=sort_by,
        SortOrder=order,
        MaxResults=4,
        NextToken=body["NextToken"],
    )
    assert [m["ModelName"] for m in body["Models"] + rest["Models"]] == expected


def test_name_contains_ignores_case(
    server: PolyhostProcess, seven_models: tuple[str, list[str]]
) -> None:
    marker, _names = seven_models
    body = _models(server, NameContains=f"{marker}-A".upper())
    assert [m["ModelName"] for m in body["Models"]] == [f"{marker}-a"]


def test_creation_time_filters(
    server: PolyhostProcess, sagemaker: Any, seven_models: tuple[str, list[str]]
) -> None:
    marker, names = seven_models
    times = [m["CreationTime"] for m in _models(server, NameContains=marker)["Models"]][::-1]
    after = _models(server, NameContains=marker, CreationTimeAfter=times[2])
    assert [m["ModelName"] for m in after["Models"]] == names[3:][::-1]  # strictly after
    before = _models(server, NameContains=marker, CreationTimeBefore=times[2])
    assert [m["ModelName"] for m in before["Models"]] == names[:2][::-1]
    between = _models(
        server, NameContains=marker, CreationTimeAfter=times[1], CreationTimeBefore=times[5]
    )
    assert [m["ModelName"] for m in between["Models"]] == names[2:5][::-1]
    # Through boto3, with datetimes (botocore sends whole seconds).
    now = datetime.datetime.now(datetime.UTC)
    hour = datetime.timedelta(hours=1)
    assert (
        len(sagemaker.list_models(NameContains=marker, CreationTimeBefore=now + hour)["Models"])
        == 7
    )
    assert sagemaker.list_models(NameContains=marker, CreationTimeAfter=now + hour)["Models"] == []


def test_pages_stay_consistent_while_resources_come_and_go(
    server: PolyhostProcess, sagemaker: Any
) -> None:
    marker = unique("churn")
    names = [make_model(sagemaker, f"{marker}-{i}") for i in range(6)]
    first = _models(server, NameContains=marker, MaxResults=3)
    assert [m["ModelName"] for m in first["Models"]] == names[:2:-1]
    make_model(sagemaker, f"{marker}-new")  # newest: belongs before the first page
    sagemaker.delete_model(ModelName=names[1])  # not yet seen: must not appear
    second = _models(server, NameContains=marker, MaxResults=3, NextToken=first["NextToken"])
    assert [m["ModelName"] for m in second["Models"]] == [names[2], names[0]]
    assert "NextToken" not in second


def _token(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "not a token",
        "e30",  # {}
        _token({"v": 1, "s": "created", "d": True, "k": ["yesterday", "x"]}),
        _token({"v": 1, "s": "created", "d": True, "k": [1.0]}),
        _token({"v": 9, "s": "created", "d": True, "k": [1.0, "x"]}),
        "x" * 8000,
        _token({"v": 1, "s": "created", "d": True, "k": [10**400, "x"]}),
        base64.urlsafe_b64encode(b'{"v":1,"s":"created","d":true,"k":[1.5,"\\ud800"]}').decode(),
        base64.urlsafe_b64encode(b'{"v":1,"s":"created","d":true,"k":[NaN,"x"]}').decode(),
    ],
    ids=[
        "text",
        "empty object",
        "wrong type",
        "short key",
        "other version",
        "long",
        "huge number",
        "lone surrogate",
        "NaN",
    ],
)
def test_bad_tokens(server: PolyhostProcess, token: str) -> None:
    status, body = raw_call(server, "ListModels", {"NextToken": token})
    assert (status, body["__type"]) == (400, "ValidationException")
    assert body["message"].startswith("Invalid NextToken '")
    assert body["message"].endswith(
        "': pass the NextToken of the previous answer of the same List call (same SortBy and "
        "SortOrder) unchanged, or leave it out to start over."
    )


def test_a_token_is_bound_to_its_sort_order(
    sagemaker: Any, seven_models: tuple[str, list[str]]
) -> None:
    marker, _ = seven_models
    token = sagemaker.list_models(NameContains=marker, MaxResults=2)["NextToken"]
    with pytest.raises(ClientError) as excinfo:
        sagemaker.list_models(NameContains=marker, MaxResults=2, NextToken=token, SortBy="Name")
    assert client_error(excinfo).message.startswith("Invalid NextToken")


def test_list_endpoint_configs_pages_and_sorts(server: PolyhostProcess, sagemaker: Any) -> None:
    model = make_model(sagemaker)
    marker = unique("lcfg")
    names = [make_config(sagemaker, model, f"{marker}-{c}") for c in "cab"]
    paginator = sagemaker.get_paginator("list_endpoint_configs")
    listed = [
        c["EndpointConfigName"]
        for page in paginator.paginate(
            NameContains=marker, SortBy="Name", PaginationConfig={"PageSize": 2}
        )
        for c in page["EndpointConfigs"]
    ]
    assert listed == sorted(names, reverse=True)  # SortOrder defaults to Descending
    status, body = raw_call(server, "ListEndpointConfigs", {"SortBy": "Status"})
    assert (status, body["__type"]) == (400, "ValidationException")  # not a config sort key


def test_list_endpoints_filters_and_sorts(server: PolyhostProcess, sagemaker: Any) -> None:
    marker = unique("lep")
    names = [make_endpoint(sagemaker, f"{marker}-{c}")[0] for c in "ba"]
    try:
        _status, body = raw_call(server, "ListEndpoints", {"NameContains": marker})
        assert [e["EndpointName"] for e in body["Endpoints"]] == names[::-1]
        modified = [e["LastModifiedTime"] for e in body["Endpoints"]]
        # Every endpoint was modified by now, none after an hour from now.
        listed = sagemaker.list_endpoints(
            NameContains=marker,
            LastModifiedTimeAfter=datetime.datetime(2000, 1, 1),
            LastModifiedTimeBefore=datetime.datetime.now() + datetime.timedelta(hours=1),
        )
        assert len(listed["Endpoints"]) == 2
        _, body = raw_call(
            server,
            "ListEndpoints",
            {"NameContains": marker, "LastModifiedTimeAfter": max(modified)},
        )
        assert all(e["LastModifiedTime"] > max(modified) for e in body["Endpoints"])
        # Status: every endpoint listed has the asked status; order by status, then name.
        for wanted in ("Creating", "InService", "Failed", "OutOfService"):
            found = sagemaker.list_endpoints(NameContains=marker, StatusEquals=wanted)
            assert all(e["EndpointStatus"] == wanted for e in found["Endpoints"])
        by_status = sagemaker.list_endpoints(
            NameContains=marker, SortBy="Status", SortOrder="Ascending"
        )
        keys = [(e["EndpointStatus"], e["EndpointName"]) for e in by_status["Endpoints"]]
        assert len(keys) == 2
        assert keys == sorted(keys)
    finally:
        for name in names:
            sagemaker.delete_endpoint(EndpointName=name)
