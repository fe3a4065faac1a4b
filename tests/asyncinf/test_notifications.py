"""SNS notifications of asynchronous answers, end to end: a real server publishes to moto's SNS,
where an SQS queue subscribed to the topic receives what a user's consumer would read."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import boto3
import pytest

from polyhost.asyncinf.notify import Notifier
from polyhost.asyncinf.queue import AsyncRequest
from polyhost.control.seam import AsyncInferenceSpec
from tests.asyncinf.test_async_invocations import deploy_async, put_input, wait_object
from tests.support.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoS3, s3_server  # noqa: F401
from tests.support.server import PolyhostProcess, ServerFactory


def _client(moto: MotoS3, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=moto.endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


class Subscribed:
    """An SNS topic with an SQS queue subscribed to it."""

    def __init__(self, moto: MotoS3, name: str) -> None:
        self.sns, self.sqs = _client(moto, "sns"), _client(moto, "sqs")
        unique = f"{name}-{uuid.uuid4().hex[:8]}"
        self.topic = self.sns.create_topic(Name=unique)["TopicArn"]
        self.queue = self.sqs.create_queue(QueueName=unique)["QueueUrl"]
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])
        queue_arn = attributes["Attributes"]["QueueArn"]
        self.sns.subscribe(TopicArn=self.topic, Protocol="sqs", Endpoint=queue_arn)

    def receive(self, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.sqs.receive_message(QueueUrl=self.queue, WaitTimeSeconds=1)
            for message in answer.get("Messages", []):
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
                envelope = json.loads(message["Body"])
                notice: dict[str, Any] = json.loads(envelope["Message"])
                return notice
        raise AssertionError("no notification arrived")

    def empty(self) -> bool:
        answer = self.sqs.receive_message(QueueUrl=self.queue, WaitTimeSeconds=1)
        return not answer.get("Messages")


@pytest.fixture(scope="module")
def bucket(s3_server: MotoS3) -> str:  # noqa: F811
    return s3_server.new_bucket("notify")


@pytest.fixture(scope="module")
def server(start_server: ServerFactory, s3_server: MotoS3) -> PolyhostProcess:  # noqa: F811
    return start_server(env={**s3_server.env(), "AWS_ENDPOINT_URL_SNS": s3_server.endpoint})


def test_success_and_error_topics_get_the_documented_fields(
    server: PolyhostProcess,
    s3_server: MotoS3,  # noqa: F811
    bucket: str,
) -> None:
    done, failed = Subscribed(s3_server, "done"), Subscribed(s3_server, "failed")
    sagemaker, runtime = server.sagemaker(), server.runtime()
    deploy_async(
        sagemaker,
        "notify-both",
        bucket,
        notification={
            "SuccessTopic": done.topic,
            "ErrorTopic": failed.topic,
            "IncludeInferenceResponseIn": ["SUCCESS_NOTIFICATION_TOPIC"],
        },
    )
    described = sagemaker.describe_endpoint_config(EndpointConfigName="notify-both")
    assert described["AsyncInferenceConfig"]["OutputConfig"]["NotificationConfig"] == {
        "SuccessTopic": done.topic,
        "ErrorTopic": failed.topic,
        "IncludeInferenceResponseIn": ["SUCCESS_NOTIFICATION_TOPIC"],
    }
    input_location = put_input(s3_server, bucket, b"hi")
    answer = runtime.invoke_endpoint_async(
        EndpointName="notify-both",
        InputLocation=input_location,
        ContentType="text/plain",
        Accept="text/plain",
        InferenceId="notified",
    )
    notice = done.receive()
    assert notice["invocationStatus"] == "Completed"
    assert notice["inferenceId"] == "notified"
    assert notice["awsRegion"] == REGION
    assert (notice["eventVersion"], notice["eventSource"], notice["eventName"]) == (
        "1.0",
        "aws:sagemaker",
        "InferenceResult",
    )
    assert notice["requestParameters"] == {
        "accept": "text/plain",
        "contentType": "text/plain",
        "endpointName": "notify-both",
        "inputLocation": input_location,
    }
    assert notice["responseParameters"] == {
        "contentType": "text/plain",
        "outputLocation": answer["OutputLocation"],
    }
    assert notice["receivedTime"] <= notice["eventTime"]
    assert notice["eventTime"].endswith("Z")
    assert base64.b64decode(notice["responseBody"]["content"]) == b"notify-both:hi"
    # Published after the answer was written.
    assert wait_object(s3_server, answer["OutputLocation"], timeout=1)["Body"].read() == (
        b"notify-both:hi"
    )

    failing = runtime.invoke_endpoint_async(
        EndpointName="notify-both",
        InputLocation=put_input(s3_server, bucket, b"boom"),
        CustomAttributes="status=500",
        InferenceId="failing",
    )
    notice = failed.receive()
    assert notice["invocationStatus"] == "Failed"
    assert notice["inferenceId"] == "failing"
    assert notice["responseParameters"]["failureLocation"] == failing["FailureLocation"]
    assert "ModelError" in notice["failureReason"]
    assert "responseBody" not in notice  # IncludeInferenceResponseIn names only success
    assert done.empty()


def test_a_failed_publish_loses_no_answer(
    server: PolyhostProcess,
    s3_server: MotoS3,  # noqa: F811
    bucket: str,
) -> None:
    sagemaker, runtime = server.sagemaker(), server.runtime()
    missing = f"arn:aws:sns:{REGION}:123456789012:no-such-topic-{uuid.uuid4().hex[:8]}"
    deploy_async(sagemaker, "notify-missing", bucket, notification={"SuccessTopic": missing})
    answer = runtime.invoke_endpoint_async(
        EndpointName="notify-missing", InputLocation=put_input(s3_server, bucket, b"still")
    )
    assert wait_object(s3_server, answer["OutputLocation"])["Body"].read() == (
        b"notify-missing:still"
    )


def test_a_publish_that_fails_is_counted_not_raised(
    s3_server: MotoS3,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", s3_server.endpoint)
    request = AsyncRequest(
        endpoint="e",
        inference_id="i",
        input_location="s3://b/in",
        content_type=None,
        accept=None,
        custom_attributes=None,
        received=time.time(),
        expires=time.time() + 60,
        timeout_s=60,
        output_location="s3://b/out/i.out",
        failure_location="s3://b/failed/i-error.out",
    )
    config = AsyncInferenceSpec(
        output_path="s3://b/out",
        success_topic=f"arn:aws:sns:{REGION}:123456789012:absent-{uuid.uuid4().hex[:8]}",
    )
    notifier = Notifier(REGION, 5.0)
    notifier.finished(config, request, time.time(), ok=True, content_type="text/plain", body=b"x")
    assert (notifier.published, notifier.failures) == (0, 1)
    notifier.finished(None, request, time.time(), ok=True, content_type="text/plain", body=b"x")
    assert (notifier.published, notifier.failures) == (0, 1)
