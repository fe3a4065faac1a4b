"""S3 and SNS reached as the model's role, end to end: a real server whose own credentials moto
refuses where the role's are needed.

moto's server checks every request against its IAM once its first few (this module's set-up of
two IAM users) are past. The model role's user may do anything; the server's user may not touch
the role's bucket nor publish to SNS. So an answer written to the role's bucket, read from an
input there, and a notification received, can only come from the role's credentials; and a
model whose role the server does not map is served with the server's own, as before.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.support.endpoints import echo_container, wait_status
from tests.support.s3 import REGION, MotoS3
from tests.support.server import PolyhostProcess, ServerFactory

ROLE = "arn:aws:iam::123456789012:role/AsyncModelRole"
UNMAPPED = "arn:aws:iam::123456789012:role/NotInRolesFile"
SET_UP_REQUESTS = 6  # two users: create_user, create_access_key, put_user_policy each


class AuthorizingMoto:
    """moto's server with IAM enforced, and the keys of its two users."""

    def __init__(self, moto: MotoS3) -> None:
        self.moto = moto
        iam = self.client("iam", ("AKIASETUP", "set-up"))
        self.keys: dict[str, tuple[str, str]] = {}
        server_policy = [
            {"Effect": "Allow", "Action": "*", "Resource": "*"},
            {
                "Effect": "Deny",
                "Action": "s3:*",
                "Resource": ["arn:aws:s3:::role-only-*", "arn:aws:s3:::role-only-*/*"],
            },
            {"Effect": "Deny", "Action": "sns:*", "Resource": "*"},
        ]
        for user, statements in (
            ("model-role", [{"Effect": "Allow", "Action": "*", "Resource": "*"}]),
            ("server", server_policy),
        ):
            iam.create_user(UserName=user)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            self.keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
            iam.put_user_policy(
                UserName=user,
                PolicyName="access",
                PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
            )

    def client(self, service: str, keys: tuple[str, str]) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.moto.endpoint,
            region_name=REGION,
            aws_access_key_id=keys[0],
            aws_secret_access_key=keys[1],
        )

    def as_role(self, service: str) -> Any:
        return self.client(service, self.keys["model-role"])


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthorizingMoto]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INITIAL_NO_AUTH_ACTION_COUNT", str(SET_UP_REQUESTS))
        server = MotoS3(tmp_path_factory.mktemp("moto-iam") / "moto.log").start()
    try:
        yield AuthorizingMoto(server)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(
    start_server: ServerFactory, moto: AuthorizingMoto, tmp_path_factory: pytest.TempPathFactory
) -> PolyhostProcess:
    folder = tmp_path_factory.mktemp("roles")
    key_id, secret = moto.keys["model-role"]
    (folder / "model-role.ini").write_text(
        f"aws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n", encoding="utf-8"
    )
    roles = folder / "roles.toml"
    roles.write_text(f'[roles."{ROLE}"]\ncredentials_file = "model-role.ini"\n', encoding="utf-8")
    server_key, server_secret = moto.keys["server"]
    return start_server(
        "--role-credentials",
        str(roles),
        name="async-roles",
        env={
            "AWS_ENDPOINT_URL_S3": moto.moto.endpoint,
            "AWS_ENDPOINT_URL_SNS": moto.moto.endpoint,
            "AWS_ACCESS_KEY_ID": server_key,
            "AWS_SECRET_ACCESS_KEY": server_secret,
            "AWS_DEFAULT_REGION": REGION,
        },
    )


def deploy(sagemaker: Any, name: str, role: str, bucket: str, topic: str | None) -> None:
    sagemaker.create_model(
        ModelName=name, ExecutionRoleArn=role, PrimaryContainer=echo_container(name)
    )
    output: dict[str, Any] = {"S3OutputPath": f"s3://{bucket}/{name}/out"}
    if topic is not None:
        output["NotificationConfig"] = {"SuccessTopic": topic}
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
        ],
        AsyncInferenceConfig={"OutputConfig": output},
    )
    sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    assert wait_status(sagemaker, name)["EndpointStatus"] == "InService"


def wait_body(s3: Any, location: str, timeout: float = 30.0) -> bytes:
    bucket, _, key = location[len("s3://") :].partition("/")
    deadline = time.monotonic() + timeout
    while True:
        try:
            body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return body
        except s3.exceptions.NoSuchKey:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_input_answer_and_notification_go_as_the_models_role(
    server: PolyhostProcess, moto: AuthorizingMoto
) -> None:
    s3, sns, sqs = moto.as_role("s3"), moto.as_role("sns"), moto.as_role("sqs")
    bucket = f"role-only-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/request", Body=b"as the role")
    topic = sns.create_topic(Name=f"done-{uuid.uuid4().hex[:8]}")["TopicArn"]
    queue = sqs.create_queue(QueueName=f"done-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    # The server's own keys are refused there: only the role's can do what follows.
    with pytest.raises(Exception, match="AccessDenied"):
        moto.client("s3", moto.keys["server"]).get_object(Bucket=bucket, Key="in/request")

    deploy(server.sagemaker(), "as-role", ROLE, bucket, topic)
    answer = server.runtime().invoke_endpoint_async(
        EndpointName="as-role", InputLocation=f"s3://{bucket}/in/request"
    )
    assert wait_body(s3, answer["OutputLocation"]) == b"as-role:as the role"
    deadline = time.monotonic() + 30
    notices: list[Any] = []
    while not notices and time.monotonic() < deadline:
        notices = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", [])
    assert notices, "no notification arrived"
    notice = json.loads(json.loads(notices[0]["Body"])["Message"])
    assert notice["inferenceId"] == answer["InferenceId"]
    assert notice["invocationStatus"] == "Completed"


def test_an_unmapped_role_is_served_with_the_servers_credentials(
    server: PolyhostProcess, moto: AuthorizingMoto
) -> None:
    server_s3 = moto.client("s3", moto.keys["server"])
    bucket = f"server-{uuid.uuid4().hex[:8]}"
    server_s3.create_bucket(Bucket=bucket)
    server_s3.put_object(Bucket=bucket, Key="in/request", Body=b"as the server")
    deploy(server.sagemaker(), "as-server", UNMAPPED, bucket, None)
    answer = server.runtime().invoke_endpoint_async(
        EndpointName="as-server", InputLocation=f"s3://{bucket}/in/request"
    )
    assert wait_body(server_s3, answer["OutputLocation"]) == b"as-server:as the server"
