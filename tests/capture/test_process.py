"""The writer process's batch writer (`capture/process.py`) against a real S3 (moto's server):
one object per target, variant and hour, each line a record, and what became of each object
as the server is told it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from polyhost.asyncinf.credentials import AwsClients
from polyhost.backends.role_credentials import RoleCredentials
from polyhost.capture.config import CaptureTarget, capture_target
from polyhost.capture.process import BatchWriter
from polyhost.capture.record import Row
from polyhost.control.seam import DataCaptureSpec, EndpointSpec, VariantSpec
from tests.support.s3 import MotoS3, s3_server  # noqa: F401  (fixture)

AT = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.fixture
def s3_env(s3_server: MotoS3) -> Iterator[MotoS3]:  # noqa: F811
    saved = {key: os.environ.get(key) for key in s3_server.env()}
    os.environ.update(s3_server.env())
    yield s3_server
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def target(bucket: str, endpoint: str = "ep") -> CaptureTarget:
    spec = EndpointSpec(
        endpoint_name=endpoint,
        endpoint_arn=f"arn:aws:sagemaker:us-east-1:123456789012:endpoint/{endpoint}",
        endpoint_config_name="cfg",
        variants=(VariantSpec("prod", "m", (), "Serial"), VariantSpec("shadow", "n", (), "Serial")),
        revision=1,
        data_capture=DataCaptureSpec(f"s3://{bucket}/cap", 100, csv_content_types=("text/csv",)),
    )
    made = capture_target(spec)
    assert made is not None
    return made


def row(made: CaptureTarget, variant: str, at: float, body: bytes) -> Row:
    return (made.serial, variant, at, body, b"text/csv", b"out:" + body, b"text/csv", None)


def listing(s3: MotoS3, bucket: str) -> dict[str, list[dict[str, Any]]]:
    client = s3.client()
    found = {}
    for entry in client.list_objects_v2(Bucket=bucket).get("Contents", []):
        body = client.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
        found[entry["Key"]] = [json.loads(line) for line in body.splitlines()]
    return found


def test_a_batch_is_one_object_per_variant_and_hour(s3_env: MotoS3) -> None:
    bucket = s3_env.new_bucket("batch")
    made = target(bucket)
    writer = BatchWriter(AwsClients(RoleCredentials({}), 10.0))
    writer.begin([made.wire()])
    writer.add([row(made, "prod", AT, b"1"), row(made, "shadow", AT, b"2")])
    writer.add([row(made, "prod", AT + 1, b"3"), row(made, "prod", AT + 3600, b"4")])
    outcomes = writer.write()
    assert sorted(outcomes) == [
        ("ep", "prod", bucket, 1, None),
        ("ep", "prod", bucket, 2, None),
        ("ep", "shadow", bucket, 1, None),
    ]
    found = listing(s3_env, bucket)
    assert sorted(k.rsplit("/", 1)[0] for k in found) == [
        "cap/ep/prod/2023/11/14/22",
        "cap/ep/prod/2023/11/14/23",
        "cap/ep/shadow/2023/11/14/22",
    ]
    lines = {k.split("/")[2] + k.split("/")[6]: v for k, v in found.items()}
    assert [r["captureData"]["endpointInput"]["data"] for r in lines["prod22"]] == ["1", "3"]
    assert lines["shadow22"][0]["captureData"]["endpointOutput"]["data"] == "out:2"
    assert writer.write() == []  # nothing outlives its batch


def test_what_s3_refuses_is_reported_with_its_reason(s3_env: MotoS3) -> None:
    made = target("no-such-bucket-for-capture")
    writer = BatchWriter(AwsClients(RoleCredentials({}), 10.0))
    writer.begin([made.wire()])
    writer.add([row(made, "prod", AT, b"1"), row(made, "prod", AT, b"2")])
    ((endpoint, variant, bucket, count, reason),) = writer.write()
    assert (endpoint, variant, bucket, count) == ("ep", "prod", "no-such-bucket-for-capture", 2)
    assert reason is not None and reason.startswith("NoSuchBucket")


def test_unusable_role_credentials_fail_each_batch_with_their_reason(s3_env: MotoS3) -> None:
    made = target(s3_env.new_bucket("unusable"))
    writer = BatchWriter(AwsClients(RoleCredentials({}), 10.0), unusable="roles.toml: bad role")
    writer.begin([made.wire()])
    writer.add([row(made, "prod", AT, b"1")])
    assert writer.write() == [("ep", "prod", made.bucket, 1, "roles.toml: bad role")]
    assert listing(s3_env, made.bucket) == {}
