"""Every control-plane operation through boto3 against a real `polyhost serve` process."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.control.helpers import (
    assert_output_shape,
    make_config,
    make_endpoint,
    make_model,
    raw_call,
    unique,
)
from tests.support.errors import client_error
from tests.support.server import ACCOUNT, ECHO_IMAGE, REGION, PolyhostProcess

ARN = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"


def _not_found(kind: str, label: str, name: str) -> str:
    return f'Could not find {label} "{ARN}:{kind}/{name.lower()}".'


def _held_config(sagemaker: Any, ready: Path, **variant: Any) -> str:
    """A config whose container passes /ping only once `ready` exists: an endpoint deploying it
    stays Creating (or Updating) until the test creates that file, however fast the machine."""
    model = make_model(
        sagemaker,
        PrimaryContainer={"Image": ECHO_IMAGE, "Environment": {"ECHO_READY_FILE": str(ready)}},
    )
    return make_config(sagemaker, model, ContainerStartupHealthCheckTimeoutInSeconds=600, **variant)


def _held_endpoint(sagemaker: Any, ready: Path, name: str | None = None) -> tuple[str, str]:
    """(endpoint, config): a new endpoint that is Creating until `ready` exists."""
    config = _held_config(sagemaker, ready)
    name = name or unique("ep")
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=config)
    return name, config


# -- models ---------------------------------------------------------------------------------------


def test_create_and_describe_model_echoes_the_request(sagemaker: Any) -> None:
    name = unique("Model")  # mixed case: kept as given, lowercased in the ARN
    container = {
        "ContainerHostname": "main",
        "Image": ECHO_IMAGE,
        "ModelDataUrl": "s3://bucket/model.tar.gz",
        "Environment": {"ECHO_NAME": "first", "EMPTY": ""},
    }
    answer = sagemaker.create_model(
        ModelName=name,
        PrimaryContainer=container,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/polyhost",
        # False: this server does not isolate instances, so True is refused (test_support.py).
        EnableNetworkIsolation=False,
        Tags=[{"Key": "team", "Value": "ml"}],
    )
    assert answer["ModelArn"] == f"{ARN}:model/{name.lower()}"

    described = sagemaker.describe_model(ModelName=name)
    assert described["ModelName"] == name
    assert described["ModelArn"] == answer["ModelArn"]
    assert described["PrimaryContainer"] == container
    assert described["ExecutionRoleArn"] == "arn:aws:iam::123456789012:role/polyhost"
    assert described["EnableNetworkIsolation"] is False
    assert isinstance(described["CreationTime"], datetime.datetime)
    assert "Tags" not in described  # not part of DescribeModel's output


def test_describe_model_answers_the_output_shape_with_epoch_timestamps(
    server: PolyhostProcess, sagemaker: Any
) -> None:
    name = make_model(
        sagemaker,
        Containers=[{"Image": ECHO_IMAGE}, {"Image": "polyhost/sklearn"}],
    )
    status, body = raw_call(server, "DescribeModel", {"ModelName": name})
    assert status == 200
    assert_output_shape("DescribeModel", body)
    assert isinstance(body["CreationTime"], float)
    # Echo what was given: no hostnames were given, none are invented in the description.
    assert body["Containers"] == [{"Image": ECHO_IMAGE}, {"Image": "polyhost/sklearn"}]


def test_model_names_are_unique_ignoring_case(sagemaker: Any) -> None:
    name = make_model(sagemaker, unique("dup"))
    with pytest.raises(ClientError) as excinfo:
        make_model(sagemaker, name.upper())
    assert client_error(excinfo) == (
        "ValidationException",
        400,
        f'Cannot create already existing model "{ARN}:model/{name}".',
    )
    # Lookups ignore case too, and answer with the name as created.
    assert sagemaker.describe_model(ModelName=name.upper())["ModelName"] == name


def test_describe_and_delete_of_a_missing_model(sagemaker: Any) -> None:
    name = unique("Missing")
    for call in (sagemaker.describe_model, sagemaker.delete_model):
        with pytest.raises(ClientError) as excinfo:
            call(ModelName=name)
        assert client_error(excinfo) == (
            "ValidationException",
            400,
            _not_found("model", "model", name),
        )


def test_delete_model(sagemaker: Any) -> None:
    name = make_model(sagemaker)
    assert sagemaker.delete_model(ModelName=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(ClientError):
        sagemaker.describe_model(ModelName=name)
    make_model(sagemaker, name)  # the name is free again


def test_list_models(server: PolyhostProcess, sagemaker: Any) -> None:
    marker = unique("lm")
    names = [make_model(sagemaker, f"{marker}-{i}") for i in range(3)]
    listed = sagemaker.list_models(NameContains=marker, SortBy="Name", SortOrder="Ascending")
    assert [m["ModelName"] for m in listed["Models"]] == names
    assert all(m["ModelArn"].endswith(f"model/{m['ModelName']}") for m in listed["Models"])
    _, body = raw_call(server, "ListModels", {"NameContains": marker})
    assert_output_shape("ListModels", body)


# -- endpoint configs ------------------------------------------------------------------------------


def test_endpoint_config_lifecycle(server: PolyhostProcess, sagemaker: Any) -> None:
    model = make_model(sagemaker)
    name = unique("Config")
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": model,
        "InitialInstanceCount": 2,
        "InstanceType": "ml.m5.large",
        "InitialVariantWeight": 1,  # an integer, as the SageMaker Python SDK sends it
        "ContainerStartupHealthCheckTimeoutInSeconds": 600,
        "ModelDataDownloadTimeoutInSeconds": 60,
    }
    answer = sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[variant],
        KmsKeyId="alias/key",
        Tags=[{"Key": "k", "Value": "v"}],
    )
    assert answer["EndpointConfigArn"] == f"{ARN}:endpoint-config/{name.lower()}"

    described = sagemaker.describe_endpoint_config(EndpointConfigName=name.lower())
    assert described["EndpointConfigName"] == name
    assert described["ProductionVariants"] == [{**variant, "InitialVariantWeight": 1.0}]
    assert described["KmsKeyId"] == "alias/key"
    _, body = raw_call(server, "DescribeEndpointConfig", {"EndpointConfigName": name})
    assert_output_shape("DescribeEndpointConfig", body)

    listed = sagemaker.list_endpoint_configs(NameContains=name[-12:])["EndpointConfigs"]
    assert [c["EndpointConfigName"] for c in listed] == [name]

    with pytest.raises(ClientError) as excinfo:
        make_config(sagemaker, model, name)
    assert client_error(excinfo).message == (
        f'Cannot create already existing endpoint configuration "{ARN}:endpoint-config/'
        f'{name.lower()}".'
    )

    sagemaker.delete_endpoint_config(EndpointConfigName=name)
    for call in (sagemaker.describe_endpoint_config, sagemaker.delete_endpoint_config):
        with pytest.raises(ClientError) as excinfo:
            call(EndpointConfigName=name)
        assert client_error(excinfo) == (
            "ValidationException",
            400,
            _not_found("endpoint-config", "endpoint configuration", name),
        )


def test_endpoint_config_needs_existing_models(sagemaker: Any) -> None:
    missing = unique("nomodel")
    with pytest.raises(ClientError) as excinfo:
        make_config(sagemaker, missing)
    assert client_error(excinfo) == (
        "ValidationException",
        400,
        _not_found("model", "model", missing),
    )


# -- endpoints ------------------------------------------------------------------------------------


def test_endpoint_lifecycle(server: PolyhostProcess, sagemaker: Any, tmp_path: Path) -> None:
    name, config = _held_endpoint(sagemaker, tmp_path / "ready", unique("Endpoint"))
    described = sagemaker.describe_endpoint(EndpointName=name)
    assert described["EndpointName"] == name
    assert described["EndpointArn"] == f"{ARN}:endpoint/{name.lower()}"
    assert described["EndpointConfigName"] == config
    assert described["EndpointStatus"] == "Creating"  # its container is not ready yet
    variants = described["ProductionVariants"]
    assert [v["VariantName"] for v in variants] == ["AllTraffic"]
    assert variants[0]["DesiredInstanceCount"] == 1
    assert variants[0]["DesiredWeight"] == 1.0
    _, body = raw_call(server, "DescribeEndpoint", {"EndpointName": name})
    assert_output_shape("DescribeEndpoint", body)
    assert isinstance(body["LastModifiedTime"], float)

    listed = sagemaker.list_endpoints(NameContains=name[-12:])["Endpoints"]
    assert [(e["EndpointName"], e["EndpointArn"]) for e in listed] == [
        (name, described["EndpointArn"])
    ]
    _, body = raw_call(server, "ListEndpoints", {"NameContains": name[-12:]})
    assert_output_shape("ListEndpoints", body)

    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint(EndpointName=name.lower(), EndpointConfigName=config)
    assert client_error(excinfo).message == (
        f'Cannot create already existing endpoint "{ARN}:endpoint/{name.lower()}".'
    )

    sagemaker.delete_endpoint(EndpointName=name)
    for call in (sagemaker.describe_endpoint, sagemaker.delete_endpoint):
        with pytest.raises(ClientError) as excinfo:
            call(EndpointName=name)
        assert client_error(excinfo) == (
            "ValidationException",
            400,
            _not_found("endpoint", "endpoint", name),
        )


def test_create_endpoint_needs_an_existing_config_and_its_models(sagemaker: Any) -> None:
    missing = unique("noconfig")
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint(EndpointName=unique("ep"), EndpointConfigName=missing)
    assert client_error(excinfo).message == _not_found(
        "endpoint-config", "endpoint configuration", missing
    )
    model = make_model(sagemaker)
    config = make_config(sagemaker, model)
    sagemaker.delete_model(ModelName=model)
    with pytest.raises(ClientError) as excinfo:
        sagemaker.create_endpoint(EndpointName=unique("ep"), EndpointConfigName=config)
    assert client_error(excinfo).message == _not_found("model", "model", model)


def test_model_and_config_of_a_live_endpoint_can_be_deleted(sagemaker: Any) -> None:
    """As the SageMaker Python SDK does: the endpoint keeps what it deployed."""
    name, config, model = make_endpoint(sagemaker)
    sagemaker.delete_endpoint_config(EndpointConfigName=config)
    sagemaker.delete_model(ModelName=model)
    described = sagemaker.describe_endpoint(EndpointName=name)
    assert described["EndpointConfigName"] == config
    sagemaker.delete_endpoint(EndpointName=name)


def test_update_endpoint(sagemaker: Any, tmp_path: Path) -> None:
    name, config, _ = make_endpoint(sagemaker)
    other = _held_config(sagemaker, tmp_path / "ready")
    with pytest.raises(ClientError) as excinfo:
        sagemaker.update_endpoint(EndpointName=unique("ep"), EndpointConfigName=other)
    assert client_error(excinfo).message.startswith('Could not find endpoint "')
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 90}
    )
    answer = sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=other)
    assert answer["EndpointArn"] == f"{ARN}:endpoint/{name}"
    described = sagemaker.describe_endpoint(EndpointName=name)
    assert described["EndpointStatus"] == "Updating"  # the new container is not ready yet
    assert described["EndpointConfigName"] == config  # the old one serves meanwhile
    sagemaker.delete_endpoint(EndpointName=name)


def test_update_of_an_endpoint_in_progress_is_refused(sagemaker: Any, tmp_path: Path) -> None:
    """Refused while Creating and while Updating; the endpoints are held in those states."""
    name, config = _held_endpoint(sagemaker, tmp_path / "created")
    in_progress = f'Cannot update in-progress endpoint "{ARN}:endpoint/{name}".'
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Creating"
    with pytest.raises(ClientError) as excinfo:
        sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=config)
    assert client_error(excinfo) == ("ValidationException", 400, in_progress)

    (tmp_path / "created").touch()
    assert _wait_for(sagemaker, name, "InService")["EndpointStatus"] == "InService"
    other = _held_config(sagemaker, tmp_path / "updated")
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=other)
    assert sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Updating"
    with pytest.raises(ClientError) as excinfo:
        sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=config)
    assert client_error(excinfo) == ("ValidationException", 400, in_progress)
    sagemaker.delete_endpoint(EndpointName=name)


def test_endpoint_deleted_waiter(sagemaker: Any) -> None:
    name, _, _ = make_endpoint(sagemaker)
    sagemaker.delete_endpoint(EndpointName=name)
    # EndpointDeleted succeeds on the not-found ValidationException of DescribeEndpoint.
    sagemaker.get_waiter("endpoint_deleted").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 3}
    )


def test_endpoint_in_service_waiter_fails_fast_on_a_missing_endpoint(sagemaker: Any) -> None:
    from botocore.exceptions import WaiterError

    with pytest.raises(WaiterError) as excinfo:
        sagemaker.get_waiter("endpoint_in_service").wait(
            EndpointName=unique("ghost"), WaiterConfig={"Delay": 1, "MaxAttempts": 3}
        )
    assert "ValidationException" in str(excinfo.value)


def _wait_for(sagemaker: Any, name: str, status: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        described: dict[str, Any] = sagemaker.describe_endpoint(EndpointName=name)
        if described["EndpointStatus"] == status or time.monotonic() > deadline:
            return described
        time.sleep(0.1)


def test_the_deployer_moves_the_endpoint_through_create_and_update(
    sagemaker: Any, tmp_path: Path
) -> None:
    """With the server's real deployer: Creating -> InService, then a blue/green update whose
    new container is ready only when the test says so."""
    name, first, _ = make_endpoint(sagemaker)
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 90}
    )
    described = sagemaker.describe_endpoint(EndpointName=name)
    (variant,) = described["ProductionVariants"]
    assert variant["CurrentInstanceCount"] == 1
    assert [i["SpecifiedImage"] for i in variant["DeployedImages"]] == [ECHO_IMAGE]
    assert "FailureReason" not in described

    second = _held_config(sagemaker, tmp_path / "ready", InitialVariantWeight=2.0)
    sagemaker.update_endpoint(EndpointName=name, EndpointConfigName=second)
    updating = sagemaker.describe_endpoint(EndpointName=name)
    assert updating["EndpointStatus"] == "Updating"
    assert updating["EndpointConfigName"] == first
    assert updating["PendingDeploymentSummary"]["EndpointConfigName"] == second
    (tmp_path / "ready").touch()
    done = _wait_for(sagemaker, name, "InService")
    assert (done["EndpointStatus"], done["EndpointConfigName"]) == ("InService", second)
    assert done["ProductionVariants"][0]["CurrentWeight"] == 2.0
    assert done["LastModifiedTime"] >= described["LastModifiedTime"]
    sagemaker.delete_endpoint(EndpointName=name)


# -- tags -----------------------------------------------------------------------------------------


def test_tags_on_every_kind(sagemaker: Any) -> None:
    endpoint, config, model = make_endpoint(sagemaker)
    for arn in (
        f"{ARN}:model/{model}",
        f"{ARN}:endpoint-config/{config}",
        f"{ARN}:endpoint/{endpoint}",
    ):
        answer = sagemaker.add_tags(
            ResourceArn=arn, Tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
        )
        assert answer["Tags"] == [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]
        sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "a", "Value": "one"}])
        assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == [
            {"Key": "a", "Value": "one"},
            {"Key": "b", "Value": "2"},
        ]
        sagemaker.delete_tags(ResourceArn=arn, TagKeys=["a", "never-there"])
        assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "b", "Value": "2"}]
    sagemaker.delete_endpoint(EndpointName=endpoint)


def test_tags_given_at_creation_are_listed_and_go_with_the_resource(sagemaker: Any) -> None:
    name = make_model(sagemaker, Tags=[{"Key": "owner", "Value": "me"}])
    arn = f"{ARN}:model/{name}"
    assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "owner", "Value": "me"}]
    sagemaker.delete_model(ModelName=name)
    make_model(sagemaker, name)  # same name again: a new resource without the old tags
    assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == []


def test_list_tags_pages(sagemaker: Any) -> None:
    name = make_model(sagemaker)
    arn = f"{ARN}:model/{name}"
    tags = [{"Key": f"k{i:02}", "Value": str(i)} for i in range(50)]
    sagemaker.add_tags(ResourceArn=arn, Tags=tags)
    paginator = sagemaker.get_paginator("list_tags")
    seen = [t for page in paginator.paginate(ResourceArn=arn, MaxResults=50) for t in page["Tags"]]
    assert seen == tags
    first = sagemaker.list_tags(ResourceArn=arn, MaxResults=50)
    assert "NextToken" not in first


def test_tag_limit(sagemaker: Any) -> None:
    name = make_model(sagemaker)
    arn = f"{ARN}:model/{name}"
    sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": ""} for i in range(49)])
    with pytest.raises(ClientError) as excinfo:
        sagemaker.add_tags(
            ResourceArn=arn, Tags=[{"Key": "x", "Value": ""}, {"Key": "y", "Value": ""}]
        )
    assert client_error(excinfo) == (
        "ValidationException",
        400,
        f"A resource can have at most 50 tags; {arn} would have 51.",
    )
    assert len(sagemaker.list_tags(ResourceArn=arn)["Tags"]) == 49  # nothing written


@pytest.mark.parametrize(
    ("arn", "message"),
    [
        (f"{ARN}:model/nothing-here", f'Could not find model "{ARN}:model/nothing-here".'),
        (
            f"{ARN}:endpoint-config/nothing-here",
            f'Could not find endpoint configuration "{ARN}:endpoint-config/nothing-here".',
        ),
        (f"{ARN}:endpoint/nothing-here", f'Could not find endpoint "{ARN}:endpoint/nothing-here".'),
        (
            f"{ARN}:training-job/job",
            "polyhost keeps tags on models, endpoint configurations, endpoints and inference "
            f"components only; '{ARN}:training-job/job' names none of them.",
        ),
    ],
)
def test_tags_of_unknown_resources(sagemaker: Any, arn: str, message: str) -> None:
    for call in (
        lambda: sagemaker.list_tags(ResourceArn=arn),
        lambda: sagemaker.add_tags(ResourceArn=arn, Tags=[{"Key": "k", "Value": "v"}]),
        lambda: sagemaker.delete_tags(ResourceArn=arn, TagKeys=["k"]),
    ):
        with pytest.raises(ClientError) as excinfo:
            call()
        assert client_error(excinfo) == ("ValidationException", 400, message)


def test_tags_of_another_account_are_not_found(sagemaker: Any) -> None:
    name = make_model(sagemaker)
    arn = f"arn:aws:sagemaker:{REGION}:999999999999:model/{name}"
    with pytest.raises(ClientError) as excinfo:
        sagemaker.list_tags(ResourceArn=arn)
    assert client_error(excinfo).message == f'Could not find model "{arn}".'


# -- the operation itself -------------------------------------------------------------------------


def test_unsupported_and_unknown_operations(server: PolyhostProcess) -> None:
    status, body = raw_call(server, "CreateTrainingJob", {})
    assert status == 400
    assert body["__type"] == "UnknownOperationException"
    assert body["message"].startswith(
        "polyhost does not implement the SageMaker operation CreateTrainingJob."
    )
    assert "CreateEndpoint" in body["message"]
    status, body = raw_call(server, "Frobnicate", {})
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    assert body["message"].startswith("Unknown operation 'Frobnicate'.")
