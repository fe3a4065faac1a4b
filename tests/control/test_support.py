"""Accepted means honoured: every member of every input shape polyhost serves is honoured,
echoed or refused (`awsmodel/support.py`, the tables in `control/support.py`,
`metrics/cloudwatch_api.py` and `logs/api.py`).

The walk over botocore's models fails on a member without an entry, so a member a new botocore
adds cannot slip through; the docs table is checked to be what the code says; and a real
server refuses, through boto3, the features a user is most likely to reach for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from polyhost.autoscaling.params import OPERATIONS as AUTOSCALING_OPERATIONS
from polyhost.autoscaling.support import SUPPORT as AUTOSCALING_SUPPORT
from polyhost.awsmodel.shapes import Schema, load_schema
from polyhost.awsmodel.support import (
    OperationTable,
    coverage,
    member_paths,
    refusal_message,
    refusals,
    refused,
)
from polyhost.control import support
from polyhost.control.listing import page_query
from polyhost.control.service import OPERATIONS
from polyhost.errors import InvalidParameterException, InvalidParameterValue
from polyhost.logs import api as logs_api
from polyhost.logs.api import LogsApi
from polyhost.logs.params import OPERATIONS as LOGS_OPERATIONS
from polyhost.logs.streams import LogStream
from polyhost.metrics.cloudwatch_api import SUPPORT as CLOUDWATCH_SUPPORT
from polyhost.metrics.cloudwatch_api import CloudWatchApi
from polyhost.metrics.history import MetricsHistory
from polyhost.settings import Settings
from tests.control.helpers import loose_client, make_model, unique
from tests.support.server import ECHO_IMAGE, REGION, PolyhostProcess

ROOT = Path(__file__).resolve().parents[2]
TABLES: dict[str, tuple[dict[str, OperationTable], tuple[str, ...]]] = {
    "sagemaker": (support.SUPPORT, OPERATIONS),
    "cloudwatch": (CLOUDWATCH_SUPPORT, CloudWatchApi.OPERATIONS),
    "logs": (logs_api.SUPPORT, LOGS_OPERATIONS),
    "application-autoscaling": (AUTOSCALING_SUPPORT, AUTOSCALING_OPERATIONS),
}
DESCRIBED_BY = {
    "CreateModel": "DescribeModel",
    "CreateEndpointConfig": "DescribeEndpointConfig",
    "CreateEndpoint": "DescribeEndpoint",
}


@pytest.fixture(scope="module")
def schemas() -> dict[str, Schema]:
    loaded = {service: load_schema(service, ops) for service, (_, ops) in TABLES.items()}
    loaded["sagemaker-describe"] = load_schema("sagemaker", list(DESCRIBED_BY.values()))
    return loaded


# -- the tables against botocore's models ------------------------------------------------------


@pytest.mark.parametrize("service", sorted(TABLES))
def test_every_member_of_every_served_operation_has_an_entry(
    service: str, schemas: dict[str, Schema]
) -> None:
    table, operations = TABLES[service]
    assert sorted(table) == sorted(operations)
    found = coverage(schemas[service], table)
    assert found.missing == [], "members without an entry (honoured, echoed or refused?)"
    assert found.stale == [], "entries for members the model does not have"
    assert found.redundant == [], "entries under an echoed or refused member, which covers them"


def test_a_new_member_fails_the_walk(schemas: dict[str, Schema]) -> None:
    """What the walk does when botocore adds a member: the table without one entry."""
    table = {op: dict(entries) for op, entries in support.SUPPORT.items()}
    del table["CreateEndpointConfig"]["ProductionVariants[].ServerlessConfig"]
    del table["CreateModel"]["PrimaryContainer"]
    found = coverage(schemas["sagemaker"], table)
    assert "CreateEndpointConfig: ProductionVariants[].ServerlessConfig" in found.missing
    assert "CreateModel: PrimaryContainer" in found.missing
    # Its children are no longer covered by an honoured parent's entry either: they stay
    # listed, and nothing under a refused member may have an entry of its own.
    table["CreateEndpointConfig"]["ExplainerConfig.ClarifyExplainerConfig"] = refused("x")
    assert coverage(schemas["sagemaker"], table).redundant == [
        "CreateEndpointConfig: ExplainerConfig.ClarifyExplainerConfig"
    ]


def test_echoed_members_are_what_describe_answers(schemas: dict[str, Schema]) -> None:
    """An echoed member is only honest if Describe shows it: its path is in the output shape."""
    for service, (table, _) in TABLES.items():
        for operation, entries in table.items():
            echoed = [path for path, s in entries.items() if s.status == "echoed"]
            if not echoed:
                continue
            assert service == "sagemaker" and operation in DESCRIBED_BY, (operation, echoed)
            describe = schemas["sagemaker-describe"]
            output = describe.output(DESCRIBED_BY[operation])
            assert output is not None
            assert set(echoed) <= set(member_paths(describe, output)), operation


def test_refused_entries_are_well_formed() -> None:
    for table, _ in TABLES.values():
        for entries in table.values():
            for path, entry in entries.items():
                assert entry.why, path
                if entry.status != "refused":
                    assert not (entry.accepts or entry.unless or entry.own_message), path
                assert entry.unless in (None, *support.CAPABILITIES), path


def test_the_docs_table_is_what_the_code_says(schemas: dict[str, Schema]) -> None:
    written = (ROOT / support.DOC).read_text(encoding="utf-8")
    assert written == support.render(schemas), (
        "docs/supported-members.md is out of date: run `python -m polyhost.control.support "
        "--write` from the repository's root"
    )
    unsupported = (ROOT / "docs" / "unsupported.md").read_text(encoding="utf-8")
    assert "supported-members.md" in unsupported


# -- the walk over a request --------------------------------------------------------------------

TABLE: OperationTable = {
    "Feature": refused("a feature"),
    "Items[].Switch": refused("a switch", accepts=(False,)),
    "Items[].Strategy": refused("a strategy", accepts=("OURS",)),
    "Guarded": refused("a guarded thing", unless="capable"),
    "Own": refused("said by the handler", own_message=True),
}


@pytest.mark.parametrize("nothing", [None, [], {}])
def test_a_member_that_says_nothing_passes(nothing: Any) -> None:
    assert refusals(TABLE, {"Feature": nothing, "Items": [{"Switch": nothing}]}) == []


def test_accepted_values_pass_and_others_are_named_where_they_are() -> None:
    params = {
        "Items": [
            {"Switch": False, "Strategy": "OURS"},
            {"Switch": True, "Strategy": "THEIRS"},
            {"Switch": 0},  # not the boolean false
        ]
    }
    found = refusals(TABLE, params)
    assert [(r.where, r.value) for r in found] == [
        ("Items.2.Switch", True),
        ("Items.3.Switch", 0),
        ("Items.2.Strategy", "THEIRS"),
    ]
    assert refusal_message("Op", found[2:]) == (
        "polyhost does not support Items.2.Strategy = THEIRS (a strategy; it takes only OURS) "
        "yet: remove it from Op, or see docs/unsupported.md"
    )


def test_a_capability_honours_and_the_handler_words_its_own() -> None:
    params = {"Guarded": {"On": True}, "Own": "x", "Feature": {"A": 1}}
    assert [r.where for r in refusals(TABLE, params)] == ["Feature", "Guarded"]
    assert [r.where for r in refusals(TABLE, params, frozenset({"capable"}))] == ["Feature"]
    assert refusal_message("Op", refusals(TABLE, params)) == (
        "polyhost does not support Feature (a feature); Guarded (a guarded thing) yet: remove "
        "them from Op, or see docs/unsupported.md"
    )


@pytest.mark.parametrize(
    ("settings", "isolates"),
    [
        ({}, False),
        ({"isolate": True}, True),
        ({"auth_file": Path("/nonexistent/auth.toml")}, True),
        ({"auth_file": Path("/nonexistent/auth.toml"), "isolate": False}, False),
        ({"auth_file": Path("/nonexistent/auth.toml"), "backend": "ray"}, False),
    ],
)
def test_network_isolation_is_honoured_where_the_server_isolates(
    tmp_path: Path, settings: dict[str, Any], isolates: bool
) -> None:
    found = support.capabilities(Settings(state_dir=tmp_path, **settings))
    assert (support.NETWORK_ISOLATION in found) is isolates


def test_the_listing_members_claimed_honoured_reach_the_store_query() -> None:
    query = page_query(
        {
            "SortBy": "Name",
            "SortOrder": "Ascending",
            "MaxResults": 7,
            "NameContains": "abc",
            "CreationTimeBefore": 20.0,
            "CreationTimeAfter": 10.0,
            "LastModifiedTimeBefore": 40.0,
            "LastModifiedTimeAfter": 30.0,
            "StatusEquals": "InService",
        }
    )
    assert (query.order_by, query.descending, query.limit) == ("name_key", False, 8)
    assert (query.name_contains, query.status) == ("abc", "InService")
    assert (query.created_before, query.created_after) == (20.0, 10.0)
    assert (query.modified_before, query.modified_after) == (40.0, 30.0)


# -- CloudWatch and CloudWatch Logs -------------------------------------------------------------


def _cloudwatch() -> CloudWatchApi:
    return CloudWatchApi(MetricsHistory(clock=lambda: 1_700_000_000.0))


def _query(**extra: Any) -> dict[str, Any]:
    return {
        "Id": "q",
        "MetricStat": {
            "Metric": {"Namespace": "AWS/SageMaker", "MetricName": "Invocations"},
            "Period": 60,
            "Stat": "Sum",
        },
        **extra,
    }


@pytest.mark.parametrize(
    ("operation", "params", "message"),
    [
        (
            "ListMetrics",
            {"OwningAccount": "210987654321", "IncludeLinkedAccounts": True},
            "OwningAccount (cross-account observability (this server is one account))",
        ),
        (
            "GetMetricData",
            {"MetricDataQueries": [_query(), _query(Id="r", AccountId="210987654321")]},
            "MetricDataQueries.2.AccountId (cross-account",
        ),
        (
            "GetMetricData",
            {"MetricDataQueries": [_query(Period=60)]},
            "MetricDataQueries.1.Period (a query's own Period",
        ),
    ],
)
def test_cloudwatch_refuses_what_it_would_ignore(
    operation: str, params: dict[str, Any], message: str
) -> None:
    if operation == "GetMetricData":
        params = {**params, "StartTime": 1_699_990_000.0, "EndTime": 1_700_000_000.0}
    with pytest.raises(InvalidParameterValue) as raised:
        _cloudwatch().call(operation, params)
    assert raised.value.message.startswith(f"polyhost does not support {message}")
    assert raised.value.message.endswith(f"remove it from {operation}, or see docs/unsupported.md")


def test_cloudwatch_honours_what_means_nothing_here_and_refuses_dynamic_labels() -> None:
    api = _cloudwatch()
    window = {"StartTime": 1_699_990_000.0, "EndTime": 1_700_000_000.0}
    answer = api.call(
        "GetMetricData",
        {"MetricDataQueries": [_query(Label="calls")], "LabelOptions": {"Timezone": "+0130"}}
        | window,
    )
    assert answer["MetricDataResults"][0]["Label"] == "calls"
    assert api.call("ListMetrics", {"IncludeLinkedAccounts": True}) == {"Metrics": []}
    with pytest.raises(InvalidParameterValue) as raised:
        api.call("GetMetricData", {"MetricDataQueries": [_query(Label="${MAX}")]} | window)
    assert raised.value.message.startswith(
        "polyhost does not support dynamic labels yet: MetricDataQueries.member.1.Label"
    )


def test_logs_refuses_newest_first_filtering_and_cross_account_listing() -> None:
    api = LogsApi("us-east-1", "123456789012")
    group = {"logGroupName": "/aws/sagemaker/Endpoints/e"}
    with pytest.raises(InvalidParameterException) as raised:
        api.call("FilterLogEvents", {**group, "startFromHead": False}, {})
    assert raised.value.message == (
        "polyhost does not support startFromHead = false (newest-first filtering; it takes only "
        "true) yet: remove it from FilterLogEvents, or see docs/unsupported.md"
    )
    with pytest.raises(InvalidParameterException, match="accountIdentifiers"):
        api.call("DescribeLogGroups", {"accountIdentifiers": ["210987654321"]}, {})
    assert api.call("DescribeLogGroups", {"accountIdentifiers": []}, {}) == {"logGroups": []}


def test_log_group_name_pattern_is_case_sensitive_and_trims_the_answer(tmp_path: Path) -> None:
    api = LogsApi("us-east-1", "123456789012")
    catalog = {
        name: [LogStream(name, "AllTraffic", "i-0", "main", tmp_path / f"{name}.log")]
        for name in ("DataLogs", "datalogs-2", "other")
    }
    answer = api.call("DescribeLogGroups", {"logGroupNamePattern": "DataLogs"}, catalog)
    assert [g["logGroupName"] for g in answer["logGroups"]] == ["/aws/sagemaker/Endpoints/DataLogs"]
    assert set(answer["logGroups"][0]) == {"logGroupName", "creationTime", "arn"}
    full = api.call("DescribeLogGroups", {"logGroupNamePrefix": "/aws/"}, catalog)
    assert len(full["logGroups"]) == 3 and "storedBytes" in full["logGroups"][0]


# -- a real server, through boto3 ---------------------------------------------------------------


def _refusal(error: pytest.ExceptionInfo[ClientError]) -> str:
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(error.value.response["Error"]["Message"])


def _variant(model: str, **extra: Any) -> dict[str, Any]:
    return {
        "VariantName": "AllTraffic",
        "ModelName": model,
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
        "InitialVariantWeight": 1,  # an integer, as the SageMaker Python SDK sends it
        **extra,
    }


CAPTURE = {
    "EnableCapture": True,
    "InitialSamplingPercentage": 10,
    "DestinationS3Uri": "s3://bucket/capture",
    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
}


@pytest.mark.parametrize(
    ("extra", "variant", "named"),
    [
        ({"ExplainerConfig": {"ClarifyExplainerConfig": {"ShapConfig": {
            "ShapBaselineConfig": {"ShapBaseline": "1,2"}}}}}, {},
         "ExplainerConfig (SageMaker Clarify online explainability)"),
        ({}, {"CoreDumpConfig": {"DestinationS3Uri": "s3://bucket/dumps"}},
         "ProductionVariants.1.CoreDumpConfig (core dumps of a failing container to S3)"),
    ],
)  # fmt: skip
def test_create_endpoint_config_refuses_features_it_would_ignore(
    sagemaker: Any, extra: dict[str, Any], variant: dict[str, Any], named: str
) -> None:
    model = make_model(sagemaker)
    name = unique("config")
    with pytest.raises(ClientError) as raised:
        sagemaker.create_endpoint_config(
            EndpointConfigName=name, ProductionVariants=[_variant(model, **variant)], **extra
        )
    assert _refusal(raised) == (
        f"polyhost does not support {named} yet: remove it from CreateEndpointConfig, or see "
        "docs/unsupported.md"
    )
    with pytest.raises(ClientError):  # nothing was stored
        sagemaker.describe_endpoint_config(EndpointConfigName=name)


def test_sagemakers_own_validation_comes_before_a_refusal(server: PolyhostProcess) -> None:
    loose = loose_client(server)
    model = make_model(loose)
    with pytest.raises(ClientError) as raised:
        loose.create_endpoint_config(
            EndpointConfigName=unique("config"),
            ProductionVariants=[_variant(model)],
            DataCaptureConfig={**CAPTURE, "InitialSamplingPercentage": 101},
        )
    assert _refusal(raised) == (
        "1 validation error detected: Value '101' at 'dataCaptureConfig.initialSamplingPercentage'"
        " failed to satisfy constraint: Member must have value less than or equal to 100"
    )


def test_create_model_refuses_a_model_data_source_and_unkept_isolation(sagemaker: Any) -> None:
    source = {
        "S3DataSource": {
            "S3Uri": "s3://bucket/model/",
            "S3DataType": "S3Prefix",
            "CompressionType": "None",
        }
    }
    with pytest.raises(ClientError) as raised:
        sagemaker.create_model(
            ModelName=unique("model"),
            Containers=[
                {"Image": ECHO_IMAGE, "ContainerHostname": "a"},
                {"Image": ECHO_IMAGE, "ContainerHostname": "b", "ModelDataSource": source},
            ],
            InferenceExecutionConfig={"Mode": "Direct"},
        )
    assert _refusal(raised) == (
        "polyhost does not support Containers.2.ModelDataSource (model data sources: "
        "uncompressed or S3-prefix model data) yet: remove it from CreateModel, or see "
        "docs/unsupported.md"
    )
    # This server shares the host's network: a model asking to be cut off from it is refused.
    with pytest.raises(ClientError) as raised:
        make_model(sagemaker, EnableNetworkIsolation=True)
    assert "EnableNetworkIsolation = true (network isolation without --isolate" in _refusal(raised)
    name = make_model(
        sagemaker,
        PrimaryContainer={"Image": ECHO_IMAGE, "Mode": "SingleModel"},
        EnableNetworkIsolation=False,
        Tags=[],
    )
    assert sagemaker.describe_model(ModelName=name)["EnableNetworkIsolation"] is False


def test_deployment_config_refusals(sagemaker: Any) -> None:
    """UpdateEndpoint honours a BlueGreenUpdatePolicy (tests/deploy/test_guardrails.py) and a
    RollingUpdatePolicy (tests/deploy/test_rolling_endpoint.py); any DeploymentConfig at
    CreateEndpoint is refused."""
    model = make_model(sagemaker)
    config = unique("config")
    sagemaker.create_endpoint_config(
        EndpointConfigName=config, ProductionVariants=[_variant(model)]
    )
    endpoint = unique("ep")
    sagemaker.create_endpoint(EndpointName=endpoint, EndpointConfigName=config, Tags=[])
    canary = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 600,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            }
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]},
    }
    with pytest.raises(ClientError) as raised:
        sagemaker.create_endpoint(
            EndpointName=unique("ep"), EndpointConfigName=config, DeploymentConfig=canary
        )
    assert _refusal(raised) == (
        "polyhost does not support DeploymentConfig (deployment guardrails at creation: give the "
        "DeploymentConfig to UpdateEndpoint, where they are honoured) yet: remove it from "
        "CreateEndpoint, or see docs/unsupported.md"
    )
    with pytest.raises(ClientError) as raised:
        sagemaker.update_endpoint(
            EndpointName=endpoint, EndpointConfigName=config, RetainAllVariantProperties=True
        )
    assert "RetainAllVariantProperties = true (retaining variant properties" in _refusal(raised)
    assert sagemaker.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"] == config
    sagemaker.delete_endpoint(EndpointName=endpoint)


def test_echoed_members_show_up_in_describe(sagemaker: Any) -> None:
    vpc = {"SecurityGroupIds": ["sg-0123456789abcdef0"], "Subnets": ["subnet-0123456789abcdef0"]}
    model = make_model(
        sagemaker,
        PrimaryContainer={"Image": ECHO_IMAGE, "ImageConfig": {"RepositoryAccessMode": "Platform"}},
        VpcConfig=vpc,
    )
    described_model = sagemaker.describe_model(ModelName=model)
    assert described_model["VpcConfig"] == vpc
    assert described_model["PrimaryContainer"]["ImageConfig"] == {
        "RepositoryAccessMode": "Platform"
    }
    config = unique("config")
    variant = _variant(
        model,
        VolumeSizeInGB=30,
        InferenceAmiVersion="al2-ami-sagemaker-inference-gpu-2",
        RoutingConfig={"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
        EnableSSMAccess=False,
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[variant],
        KmsKeyId="arn:aws:kms:us-east-1:123456789012:key/abcd",
        VpcConfig=vpc,
        Tags=[],
    )
    described = sagemaker.describe_endpoint_config(EndpointConfigName=config)
    assert described["KmsKeyId"] == "arn:aws:kms:us-east-1:123456789012:key/abcd"
    assert described["VpcConfig"] == vpc
    assert described["ProductionVariants"] == [{**variant, "InitialVariantWeight": 1.0}]


def test_cloudwatch_and_logs_refuse_through_boto3(server: PolyhostProcess) -> None:
    cloudwatch = server.cloudwatch()
    with pytest.raises(ClientError) as raised:
        cloudwatch.list_metrics(IncludeLinkedAccounts=True, OwningAccount="210987654321")
    assert raised.value.response["Error"]["Code"] == "InvalidParameterValue"
    assert "OwningAccount (cross-account observability" in raised.value.response["Error"]["Message"]
    assert "Metrics" in cloudwatch.list_metrics(IncludeLinkedAccounts=True)
    logs = boto3.client("logs", endpoint_url=server.url, region_name=REGION)
    with pytest.raises(ClientError) as raised:
        logs.filter_log_events(logGroupName="/aws/sagemaker/Endpoints/none", startFromHead=False)
    assert raised.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "startFromHead = false (newest-first" in raised.value.response["Error"]["Message"]
