"""Shape validation from the service model: one row per kind of constraint, with the message.

Requests go over plain HTTP, as any client could send them: botocore would refuse several of
them (wrong types, missing members) before they left the machine.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from polyhost.control.validation import show
from tests.control.helpers import loose_client, make_model, raw_call, unique
from tests.support.errors import client_error
from tests.support.server import ECHO_IMAGE, PolyhostProcess

MODEL_PATTERN = "[a-zA-Z0-9]([\\-a-zA-Z0-9]*[a-zA-Z0-9])?"
NAME_PATTERN = "[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
PRIMARY = {"Image": ECHO_IMAGE}


def one(text: str) -> str:
    return f"1 validation error detected: {text}"


def variant(**extra: Any) -> dict[str, Any]:
    return {"VariantName": "v", "ModelName": "m", "InitialInstanceCount": 1, **extra}


CASES: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "pattern",
        "CreateModel",
        {"ModelName": "bad_name", "PrimaryContainer": PRIMARY},
        one(
            "Value 'bad_name' at 'modelName' failed to satisfy constraint: Member must satisfy "
            f"regular expression pattern: {MODEL_PATTERN}"
        ),
    ),
    (
        "pattern is a full match",
        "CreateModel",
        {"ModelName": "trailing-", "PrimaryContainer": PRIMARY},
        one(
            "Value 'trailing-' at 'modelName' failed to satisfy constraint: Member must satisfy "
            f"regular expression pattern: {MODEL_PATTERN}"
        ),
    ),
    (
        "max length",
        "CreateModel",
        {"ModelName": "a" * 64, "PrimaryContainer": PRIMARY},
        one(
            f"Value '{'a' * 64}' at 'modelName' failed to satisfy constraint: Member must have "
            "length less than or equal to 63"
        ),
    ),
    (
        "required member",
        "CreateModel",
        {"PrimaryContainer": PRIMARY},
        one("Value null at 'modelName' failed to satisfy constraint: Member must not be null"),
    ),
    (
        "required member given as null",
        "DescribeEndpoint",
        {"EndpointName": None},
        one("Value null at 'endpointName' failed to satisfy constraint: Member must not be null"),
    ),
    (
        "enum",
        "ListModels",
        {"SortOrder": "Upwards"},
        one(
            "Value 'Upwards' at 'sortOrder' failed to satisfy constraint: Member must satisfy "
            "enum value set: [Ascending, Descending]"
        ),
    ),
    (
        "enum of another operation",
        "ListEndpoints",
        {"StatusEquals": "Running"},
        one(
            "Value 'Running' at 'statusEquals' failed to satisfy constraint: Member must satisfy "
            "enum value set: [OutOfService, Creating, Updating, SystemUpdating, RollingBack, "
            "InService, Deleting, Failed, UpdateRollbackFailed]"
        ),
    ),
    (
        "minimum value",
        "ListEndpoints",
        {"MaxResults": 0},
        one(
            "Value '0' at 'maxResults' failed to satisfy constraint: Member must have value "
            "greater than or equal to 1"
        ),
    ),
    (
        "maximum value",
        "ListEndpointConfigs",
        {"MaxResults": 101},
        one(
            "Value '101' at 'maxResults' failed to satisfy constraint: Member must have value "
            "less than or equal to 100"
        ),
    ),
    (
        "minimum list size",
        "CreateEndpointConfig",
        {"EndpointConfigName": "c", "ProductionVariants": []},
        one(
            "Value '[]' at 'productionVariants' failed to satisfy constraint: Member must have "
            "length greater than or equal to 1"
        ),
    ),
    (
        "nested list member",
        "CreateEndpointConfig",
        {"EndpointConfigName": "c", "ProductionVariants": [variant(), variant(VariantName="b.c")]},
        one(
            "Value 'b.c' at 'productionVariants.2.member.variantName' failed to satisfy "
            f"constraint: Member must satisfy regular expression pattern: {NAME_PATTERN}"
        ),
    ),
    (
        "float minimum",
        "CreateEndpointConfig",
        {"EndpointConfigName": "c", "ProductionVariants": [variant(InitialVariantWeight=-0.5)]},
        one(
            "Value '-0.5' at 'productionVariants.1.member.initialVariantWeight' failed to satisfy "
            "constraint: Member must have value greater than or equal to 0"
        ),
    ),
    (
        "timeout range",
        "CreateEndpointConfig",
        {
            "EndpointConfigName": "c",
            "ProductionVariants": [
                variant(
                    ContainerStartupHealthCheckTimeoutInSeconds=59,
                    ModelDataDownloadTimeoutInSeconds=3601,
                )
            ],
        },
        "2 validation errors detected: Value '3601' at "
        "'productionVariants.1.member.modelDataDownloadTimeoutInSeconds' failed to satisfy "
        "constraint: Member must have value less than or equal to 3600; Value '59' at "
        "'productionVariants.1.member.containerStartupHealthCheckTimeoutInSeconds' failed to "
        "satisfy constraint: Member must have value greater than or equal to 60",
    ),
    (
        "map key pattern",
        "CreateModel",
        {"ModelName": "m", "PrimaryContainer": {**PRIMARY, "Environment": {"1ST": "x"}}},
        one(
            "Value '1ST' at 'primaryContainer.environment' failed to satisfy constraint: Map keys "
            "must satisfy constraint: [Member must satisfy regular expression pattern: "
            "[a-zA-Z_][a-zA-Z0-9_]*]"
        ),
    ),
    (
        "map value length",
        "CreateModel",
        {"ModelName": "m", "PrimaryContainer": {**PRIMARY, "Environment": {"K": "v" * 1025}}},
        one(
            f"Value '{{K={'v' * 250}...' at 'primaryContainer.environment' failed to satisfy "
            "constraint: Map value must satisfy constraint: [Member must have length less than "
            "or equal to 1024]"
        ),
    ),
    (
        "tag key with letters of any script",
        "AddTags",
        {
            "ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m",
            "Tags": [{"Key": "ключ é 1", "Value": "ok"}, {"Key": "semi;colon", "Value": "x"}],
        },
        one(
            "Value 'semi;colon' at 'tags.2.member.key' failed to satisfy constraint: Member must "
            "satisfy regular expression pattern: ([\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*)"
        ),
    ),
    (
        "model data URL",
        "CreateModel",
        {"ModelName": "m", "PrimaryContainer": {**PRIMARY, "ModelDataUrl": "ftp://host/m.tgz"}},
        one(
            "Value 'ftp://host/m.tgz' at 'primaryContainer.modelDataUrl' failed to satisfy "
            "constraint: Member must satisfy regular expression pattern: "
            "(https|s3)://([^/]+)/?(.*)|file:///.*"
        ),
    ),
    (
        "string type",
        "DescribeModel",
        {"ModelName": 5},
        one("Value '5' at 'modelName' failed to satisfy constraint: Member must be a string"),
    ),
    (
        "integer type",
        "ListModels",
        {"MaxResults": "10"},
        one("Value '10' at 'maxResults' failed to satisfy constraint: Member must be an integer"),
    ),
    (
        "a boolean is no integer",
        "ListModels",
        {"MaxResults": True},
        one("Value 'true' at 'maxResults' failed to satisfy constraint: Member must be an integer"),
    ),
    (
        "integer size",
        "ListModels",
        {"MaxResults": 2**40},
        one(
            f"Value '{2**40}' at 'maxResults' failed to satisfy constraint: Member must be an "
            "integer from -2147483648 to 2147483647"
        ),
    ),
    (
        "number type",
        "CreateEndpointConfig",
        {"EndpointConfigName": "c", "ProductionVariants": [variant(InitialVariantWeight="1")]},
        one(
            "Value '1' at 'productionVariants.1.member.initialVariantWeight' failed to satisfy "
            "constraint: Member must be a number"
        ),
    ),
    (
        "boolean type",
        "CreateModel",
        {"ModelName": "m", "PrimaryContainer": PRIMARY, "EnableNetworkIsolation": "yes"},
        one(
            "Value 'yes' at 'enableNetworkIsolation' failed to satisfy constraint: Member must be "
            "a boolean"
        ),
    ),
    (
        "timestamp type",
        "ListModels",
        {"CreationTimeAfter": "yesterday"},
        one(
            "Value 'yesterday' at 'creationTimeAfter' failed to satisfy constraint: Member must "
            "be a timestamp (epoch seconds or ISO 8601 text)"
        ),
    ),
    (
        "structure type",
        "CreateModel",
        {"ModelName": "m", "PrimaryContainer": "image"},
        one(
            "Value 'image' at 'primaryContainer' failed to satisfy constraint: Member must be a "
            "structure (a JSON object)"
        ),
    ),
    (
        "list type",
        "DeleteTags",
        {"ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m", "TagKeys": "k"},
        one(
            "Value 'k' at 'tagKeys' failed to satisfy constraint: Member must be a list (a JSON "
            "array)"
        ),
    ),
    (
        "map type",
        "CreateModel",
        {"ModelName": "m", "PrimaryContainer": {**PRIMARY, "Environment": ["A=1"]}},
        one(
            "Value '[A=1]' at 'primaryContainer.environment' failed to satisfy constraint: Member "
            "must be a map (a JSON object)"
        ),
    ),
    (
        "null inside a list",
        "DeleteTags",
        {"ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m", "TagKeys": [None]},
        one(
            "Value null at 'tagKeys.1.member' failed to satisfy constraint: Member must not be null"
        ),
    ),
    (
        "every violation at once",
        "CreateEndpointConfig",
        {
            "EndpointConfigName": "c_1",
            "ProductionVariants": [variant(VariantName="", InitialInstanceCount=0)],
            "KmsKeyId": "k" * 2049,
        },
        "4 validation errors detected: "
        "Value 'c_1' at 'endpointConfigName' failed to satisfy constraint: Member must satisfy "
        f"regular expression pattern: {NAME_PATTERN}; "
        "Value '' at 'productionVariants.1.member.variantName' failed to satisfy constraint: "
        f"Member must satisfy regular expression pattern: {NAME_PATTERN}; "
        "Value '0' at 'productionVariants.1.member.initialInstanceCount' failed to satisfy "
        "constraint: Member must have value greater than or equal to 1; "
        f"Value '{'k' * 253}...' at 'kmsKeyId' failed to satisfy constraint: Member must have "
        "length less than or equal to 2048",
    ),
]


@pytest.mark.parametrize(
    ("operation", "params", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_constraint(
    server: PolyhostProcess, operation: str, params: dict[str, Any], expected: str
) -> None:
    status, body = raw_call(server, operation, params)
    assert (status, body.get("__type")) == (400, "ValidationException"), body
    assert body["message"] == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b'{"ModelName": "m", "PrimaryContainer": {"Image": "\\ud800"}}',
            "Value '\ud800' at 'primaryContainer.image' failed to satisfy constraint: Member must "
            "be valid Unicode text",
        ),
        (
            b'{"MaxResults": 10, "CreationTimeAfter": NaN}',
            "Value 'nan' at 'creationTimeAfter' failed to satisfy constraint: Member must be a "
            "timestamp (epoch seconds or ISO 8601 text)",
        ),
    ],
    ids=["lone surrogate", "NaN"],
)
def test_json_oddities(server: PolyhostProcess, raw: bytes, expected: str) -> None:
    operation = "CreateModel" if b"ModelName" in raw else "ListModels"
    status, body = raw_call(server, operation, raw)
    assert (status, body["__type"]) == (400, "ValidationException")
    assert body["message"] == one(expected)


def test_errors_reach_boto3_as_client_errors(server: PolyhostProcess) -> None:
    client = loose_client(server)
    with pytest.raises(ClientError) as excinfo:
        client.list_endpoints(MaxResults=500, SortBy="Size")
    code, status, message = client_error(excinfo)
    assert (code, status) == ("ValidationException", 400)
    assert message.startswith("2 validation errors detected: Value 'Size' at 'sortBy'")


def test_unknown_members_are_ignored(sagemaker: Any, server: PolyhostProcess) -> None:
    name = unique("fwd")
    status, _ = raw_call(
        server,
        "CreateModel",
        {
            "ModelName": name,
            "PrimaryContainer": {**PRIMARY, "FutureMember": {"x": 1}},
            "SomethingNew": True,
        },
    )
    assert status == 200
    described = sagemaker.describe_model(ModelName=name)
    assert described["PrimaryContainer"] == PRIMARY  # nothing unknown is stored


def test_timestamps_as_iso_text_are_understood(server: PolyhostProcess, sagemaker: Any) -> None:
    name = make_model(sagemaker)
    status, body = raw_call(
        server,
        "ListModels",
        {"NameContains": name, "CreationTimeAfter": "2000-01-01T00:00:00Z"},
    )
    assert status == 200
    assert [m["ModelName"] for m in body["Models"]] == [name]


def test_an_oversized_list_reports_its_size_not_each_element(server: PolyhostProcess) -> None:
    status, body = raw_call(
        server,
        "DeleteTags",
        {"ResourceArn": "arn:aws:sagemaker:us-east-1:123456789012:model/m", "TagKeys": [""] * 60},
    )
    assert status == 400
    assert body["message"].startswith("1 validation error detected: Value '[, , ")
    assert body["message"].endswith("Member must have length less than or equal to 50")


def test_a_flood_of_violations_is_counted_but_listed_only_in_part(server: PolyhostProcess) -> None:
    bad_environment = {f"{i}bad": "x" for i in range(100)}
    containers = [
        {"Image": ECHO_IMAGE, "ContainerHostname": f"c{i}", "Environment": bad_environment}
        for i in range(15)
    ]
    status, body = raw_call(server, "CreateModel", {"ModelName": "m", "Containers": containers})
    assert status == 400
    message = body["message"]
    assert message.startswith("1500 validation errors detected: Value '0bad' at ")
    assert message.endswith("; and 1400 more")
    assert message.count("Map keys must satisfy constraint") == 100


def test_showing_a_value_in_a_message_is_bounded_in_depth_and_length() -> None:
    """`show` puts a caller's value into a message: however deep or wide the value, it neither
    recurses without bound (a 400-level array once overflowed the stack) nor builds more text
    than the message keeps."""
    deep: list[Any] = []
    inner = deep
    for _ in range(5000):
        inner.append([])
        inner = inner[0]
    assert show(deep) == "[" * 16 + "[...]" + "]" * 16
    wide = [[["x" * 1000] * 20] * 20] * 20
    shown = show(wide)
    assert len(shown) == 256 and shown.endswith("...")
    assert show({"K": [None, True, 1.5]}) == "{K=[null, true, 1.5]}"
