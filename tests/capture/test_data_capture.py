"""Data capture end to end: boto3 against a real server whose runtime copies invocations to a
real S3 (moto's server), in SageMaker's capture format and key layout."""

from __future__ import annotations

import base64
import json
import re
import socket
import time
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.control.helpers import loose_client, unique
from tests.support.endpoints import create_model, echo_container, wait_status
from tests.support.s3 import MotoS3, s3_server  # noqa: F401  (fixture)
from tests.support.server import PolyhostProcess, ServerFactory
from tests.support.waiting import eventually

FLUSH_S = 1.0
KEY = re.compile(
    r"(?P<prefix>.+)/(?P<endpoint>[^/]+)/(?P<variant>[^/]+)/\d{4}/\d{2}/\d{2}/\d{2}/"
    r"\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl"
)


@pytest.fixture(scope="module")
def bucket(s3_server: MotoS3) -> str:  # noqa: F811
    return s3_server.new_bucket("capture")


@pytest.fixture(scope="module")
def server(start_server: ServerFactory, s3_server: MotoS3) -> PolyhostProcess:  # noqa: F811
    return start_server("--data-capture-flush-s", str(FLUSH_S), env=s3_server.env())


def capture_config(destination: str, percentage: int = 100, **extra: Any) -> dict[str, Any]:
    return {
        "EnableCapture": True,
        "InitialSamplingPercentage": percentage,
        "DestinationS3Uri": destination,
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json"],
        },
        **extra,
    }


def make_config(sagemaker: Any, name: str, capture: dict[str, Any] | None) -> str:
    config = unique(name)
    extra = {} if capture is None else {"DataCaptureConfig": capture}
    sagemaker.create_endpoint_config(
        EndpointConfigName=config,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        **extra,
    )
    return config


def deploy(sagemaker: Any, capture: dict[str, Any] | None) -> str:
    name = unique("cap")
    create_model(sagemaker, name, [echo_container("cap")])
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=make_config(
        sagemaker, name, capture))  # fmt: skip
    assert wait_status(sagemaker, name)["EndpointStatus"] == "InService"
    return name


def records(
    s3: MotoS3, bucket: str, prefix: str, at_least: int, timeout: float = 20.0
) -> list[tuple[str, dict[str, Any]]]:
    """(key, record) of every record below `prefix`, once there are `at_least` of them."""
    client = s3.client()
    deadline = time.monotonic() + timeout
    while True:
        found: list[tuple[str, dict[str, Any]]] = []
        listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
        for entry in listing.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
            found += [(entry["Key"], json.loads(line)) for line in body.splitlines()]
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def settle() -> None:
    """Long enough for every flush that could have written something."""
    time.sleep(FLUSH_S * 3)


def metric(server: PolyhostProcess, name: str, endpoint: str) -> float:
    with urllib.request.urlopen(server.admin_url + "/metrics", timeout=5) as answer:
        text = answer.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'endpoint_name="{endpoint}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _error(raised: pytest.ExceptionInfo[ClientError]) -> str:
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(raised.value.response["Error"]["Message"])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"InitialSamplingPercentage": 101},
         "Value '101' at 'dataCaptureConfig.initialSamplingPercentage' failed to satisfy "
         "constraint: Member must have value less than or equal to 100"),
        ({"DestinationS3Uri": "bucket/prefix"},
         "at 'dataCaptureConfig.destinationS3Uri' failed to satisfy constraint: Member must "
         "satisfy regular expression pattern"),
        ({"DestinationS3Uri": "https://bucket.s3.amazonaws.com/prefix"},
         "Value 'https://bucket.s3.amazonaws.com/prefix' at 'dataCaptureConfig.destinationS3Uri'"
         " failed to satisfy constraint: Member must be an s3://bucket/prefix URL"),
        ({"CaptureOptions": []},
         "at 'dataCaptureConfig.captureOptions' failed to satisfy constraint: Member must have "
         "length greater than or equal to 1"),
        ({"CaptureOptions": [{"CaptureMode": "Everything"}]},
         "Value 'Everything' at 'dataCaptureConfig.captureOptions.1.member.captureMode' failed "
         "to satisfy constraint: Member must satisfy enum value set"),
        ({"CaptureContentTypeHeader": {"CsvContentTypes": ["not a type"]}},
         "at 'dataCaptureConfig.captureContentTypeHeader.csvContentTypes.1.member' failed to "
         "satisfy constraint: Member must satisfy regular expression pattern"),
        ({"DestinationS3Uri": None},
         "Value null at 'dataCaptureConfig.destinationS3Uri' failed to satisfy constraint: "
         "Member must not be null"),
    ],
)  # fmt: skip
def test_a_bad_capture_config_is_refused_naming_the_member(
    server: PolyhostProcess, change: dict[str, Any], message: str
) -> None:
    loose = loose_client(server)
    name = unique("bad")
    create_model(loose, name, [echo_container("bad")])
    capture = {k: v for k, v in {**capture_config("s3://b/p"), **change}.items() if v is not None}
    with pytest.raises(ClientError) as raised:
        make_config(loose, name, capture)
    assert message in _error(raised)


def test_capture_of_an_asynchronous_endpoint_is_refused(server: PolyhostProcess) -> None:
    sagemaker = server.sagemaker()
    name = unique("async")
    create_model(sagemaker, name, [echo_container("a")])
    with pytest.raises(ClientError) as raised:
        sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": name,
                                 "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}],
            DataCaptureConfig=capture_config("s3://b/p"),
            AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": "s3://b/out"}},
        )  # fmt: skip
    assert "DataCaptureConfig cannot be combined with AsyncInferenceConfig" in _error(raised)


def test_records_reach_s3_in_sagemakers_format(
    server: PolyhostProcess,
    s3_server: MotoS3,  # noqa: F811
    bucket: str,
) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    name = deploy(sagemaker, capture_config(f"s3://{bucket}/formats", KmsKeyId="alias/capture"))
    described = sagemaker.describe_endpoint(EndpointName=name)
    assert described["DataCaptureConfig"] == {
        "EnableCapture": True,
        "CaptureStatus": "Started",
        "CurrentSamplingPercentage": 100,
        "DestinationS3Uri": f"s3://{bucket}/formats",
        "KmsKeyId": "alias/capture",
    }
    config = sagemaker.describe_endpoint_config(EndpointConfigName=described["EndpointConfigName"])
    assert config["DataCaptureConfig"]["CaptureContentTypeHeader"]["CsvContentTypes"] == [
        "text/csv"
    ]
    binary = bytes(range(256))
    runtime.invoke_endpoint(
        EndpointName=name, Body=b'{"x": 1}', ContentType="application/json", InferenceId="j-1"
    )
    runtime.invoke_endpoint(EndpointName=name, Body=b"1,2,3", ContentType="text/csv")
    runtime.invoke_endpoint(EndpointName=name, Body=binary, ContentType="application/x-npy")
    found = records(s3_server, bucket, f"formats/{name}", at_least=3)
    assert len(found) == 3
    for key, _ in found:
        match = KEY.fullmatch(key)
        assert match is not None, key
        assert match["prefix"] == "formats"
        assert (match["endpoint"], match["variant"]) == (name, "AllTraffic")
    by_type = {r["captureData"]["endpointInput"]["observedContentType"]: r for _, r in found}
    js = by_type["application/json"]
    assert js["eventVersion"] == "0"
    assert js["eventMetadata"]["inferenceId"] == "j-1"
    assert re.fullmatch(
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", js["eventMetadata"]["inferenceTime"]
    )
    assert js["captureData"]["endpointInput"] == {
        "observedContentType": "application/json",
        "mode": "INPUT",
        "data": '{"x": 1}',
        "encoding": "JSON",
    }
    assert js["captureData"]["endpointOutput"] == {
        "observedContentType": "application/json",
        "mode": "OUTPUT",
        "data": 'cap:{"x": 1}',
        "encoding": "JSON",
    }
    csv = by_type["text/csv"]
    assert csv["captureData"]["endpointInput"]["encoding"] == "CSV"
    assert csv["captureData"]["endpointOutput"]["data"] == "cap:1,2,3"
    assert "inferenceId" not in csv["eventMetadata"]
    npy = by_type["application/x-npy"]["captureData"]
    assert npy["endpointInput"]["encoding"] == npy["endpointOutput"]["encoding"] == "BASE64"
    assert base64.b64decode(npy["endpointInput"]["data"]) == binary
    assert base64.b64decode(npy["endpointOutput"]["data"]) == b"cap:" + binary
    event_ids = {r["eventMetadata"]["eventId"] for _, r in found}
    assert len(event_ids) == 3
    # Counted once the writer process has said S3 took them: a moment after they are there.
    eventually(
        lambda: metric(server, "polyhost_data_capture_records_total", name) == 3,
        "the written records to be counted",
    )


@pytest.mark.parametrize(("mode", "side"), [("Input", "endpointInput"),
                                            ("Output", "endpointOutput")])  # fmt: skip
def test_input_or_output_only(
    server: PolyhostProcess,
    s3_server: MotoS3,  # noqa: F811
    bucket: str,
    mode: str,
    side: str,
) -> None:
    capture = capture_config(f"s3://{bucket}/{mode}", CaptureOptions=[{"CaptureMode": mode}])
    name = deploy(server.sagemaker(), capture)
    server.runtime().invoke_endpoint(EndpointName=name, Body=b"a,b", ContentType="text/csv")
    found = records(s3_server, bucket, f"{mode}/{name}", at_least=1)
    assert [list(r["captureData"]) for _, r in found] == [[side]]


def test_sampling_nothing_and_half(
    server: PolyhostProcess,
    s3_server: MotoS3,  # noqa: F811
    bucket: str,
) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    none = deploy(sagemaker, capture_config(f"s3://{bucket}/none", 0))
    half = deploy(sagemaker, capture_config(f"s3://{bucket}/half", 50))
    assert (
        sagemaker.describe_endpoint(EndpointName=none)["DataCaptureConfig"][
            "CurrentSamplingPercentage"
        ]
        == 0
    )
    invocations = 400
    for _ in range(invocations):
        runtime.invoke_endpoint(EndpointName=none, Body=b"1", ContentType="text/csv")
        runtime.invoke_endpoint(EndpointName=half, Body=b"1", ContentType="text/csv")
    settle()
    assert records(s3_server, bucket, f"none/{none}", at_least=0, timeout=0) == []
    # Binomial(400, 0.5): 200 ± 10 per standard deviation; this bound is 8 of them.
    drawn = len(records(s3_server, bucket, f"half/{half}", at_least=invocations, timeout=0))
    assert 120 <= drawn <= 280, drawn


def test_update_endpoint_changes_the_sampling(
    server: PolyhostProcess,
    s3_server: MotoS3,  # noqa: F811
    bucket: str,
) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    name = deploy(sagemaker, capture_config(f"s3://{bucket}/update", 0))
    runtime.invoke_endpoint(EndpointName=name, Body=b"before", ContentType="text/csv")
    sagemaker.update_endpoint(
        EndpointName=name,
        EndpointConfigName=make_config(sagemaker, name, capture_config(f"s3://{bucket}/update")),
    )
    assert wait_status(sagemaker, name)["DataCaptureConfig"]["CurrentSamplingPercentage"] == 100
    runtime.invoke_endpoint(EndpointName=name, Body=b"during", ContentType="text/csv")
    found = records(s3_server, bucket, f"update/{name}", at_least=1)
    assert [r["captureData"]["endpointInput"]["data"] for _, r in found] == ["during"]
    # Capture off: the config is kept and shown, nothing more is captured.
    off = capture_config(f"s3://{bucket}/update", EnableCapture=False)
    sagemaker.update_endpoint(
        EndpointName=name, EndpointConfigName=make_config(sagemaker, name, off)
    )
    summary = wait_status(sagemaker, name)["DataCaptureConfig"]
    assert (summary["EnableCapture"], summary["CaptureStatus"]) == (False, "Stopped")
    runtime.invoke_endpoint(EndpointName=name, Body=b"after", ContentType="text/csv")
    settle()
    assert len(records(s3_server, bucket, f"update/{name}", at_least=0, timeout=0)) == 1


def test_a_missing_bucket_never_fails_an_invocation(server: PolyhostProcess) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    name = deploy(sagemaker, capture_config(f"s3://no-such-bucket-{unique()}/capture"))
    for _ in range(20):
        answer = runtime.invoke_endpoint(EndpointName=name, Body=b"x", ContentType="text/csv")
        assert answer["Body"].read() == b"cap:x"
    deadline = time.monotonic() + 20
    while metric(server, "polyhost_data_capture_failed_total", name) < 20:
        assert time.monotonic() < deadline, server.log()[-2000:]
        time.sleep(0.2)
    assert metric(server, "polyhost_data_capture_records_total", name) == 0
    # Logged once for the burst, naming the bucket and S3's code, never a body.
    lines = [line for line in server.log().splitlines() if "no-such-bucket" in line]
    assert len(lines) == 1 and "NoSuchBucket" in lines[0], lines


def test_what_is_queued_is_written_when_the_server_stops(
    start_server: ServerFactory,
    s3_server: MotoS3,  # noqa: F811
    bucket: str,
) -> None:
    own = start_server("--data-capture-flush-s", "3600", name="stopping", env=s3_server.env())
    name = deploy(own.sagemaker(), capture_config(f"s3://{bucket}/stop"))
    for index in range(5):
        own.runtime().invoke_endpoint(
            EndpointName=name, Body=str(index).encode(), ContentType="text/csv"
        )
    time.sleep(1.0)
    assert records(s3_server, bucket, f"stop/{name}", at_least=0, timeout=0) == []
    assert own.stop() == 0
    found = records(s3_server, bucket, f"stop/{name}", at_least=5, timeout=0)
    assert sorted(r["captureData"]["endpointInput"]["data"] for _, r in found) == list("01234")


def test_pipelined_invocations_are_captured_too(
    server: PolyhostProcess,
    s3_server: MotoS3,  # noqa: F811
    bucket: str,
) -> None:
    """Requests pipelined behind another take the adapter's `answer` rather than its fast lane
    (and the first of a connection its coroutine path): each is captured all the same."""
    name = deploy(server.sagemaker(), capture_config(f"s3://{bucket}/pipelined"))
    count = 8
    request = (
        f"POST /endpoints/{name}/invocations HTTP/1.1\r\nHost: x\r\n"
        "Content-Type: text/csv\r\nContent-Length: 2\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"".join(request.encode() + f"p{i}".encode() for i in range(count)))
        data = b""
        deadline = time.monotonic() + 10
        while data.count(b"HTTP/1.1 200") < count or not data.endswith(
            f"cap:p{count - 1}".encode()
        ):
            assert time.monotonic() < deadline, data
            data += sock.recv(65536)
    found = records(s3_server, bucket, f"pipelined/{name}", at_least=count)
    assert sorted(r["captureData"]["endpointInput"]["data"] for _, r in found) == [
        f"p{i}" for i in range(count)
    ]
