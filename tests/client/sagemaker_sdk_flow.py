"""Run by tests/client/test_sagemaker_sdk.py under the SageMaker Python SDK's own venv.

The SDK's documented flows, unmodified, pointed at polyhost only through the clients handed to
`sagemaker.Session`: Model.deploy + Predictor.predict, PipelineModel.deploy (a Serial pipeline),
a Direct-mode call through `initial_args`, and the SDK's delete order (models while the
endpoint is up, the endpoint config before the endpoint). Prints one line per checked answer.
"""

from __future__ import annotations

import sys

import boto3
import sagemaker
from sagemaker.model import Model
from sagemaker.pipeline import PipelineModel
from sagemaker.predictor import Predictor

url, image = sys.argv[1], sys.argv[2]
role = "arn:aws:iam::123456789012:role/polyhost"
boto = boto3.Session(region_name="us-east-1")
session = sagemaker.Session(
    boto_session=boto,
    sagemaker_client=boto.client("sagemaker", endpoint_url=url),
    sagemaker_runtime_client=boto.client("sagemaker-runtime", endpoint_url=url),
    default_bucket="unused",
)


def model(name: str) -> Model:
    return Model(
        image_uri=image,
        role=role,
        sagemaker_session=session,
        predictor_cls=Predictor,
        env={"ECHO_NAME": name},
    )


predictor = model("single").deploy(
    initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="sdk-single"
)
print("single", predictor.predict(b"hello").decode())
pipeline = PipelineModel(
    models=[model("first"), model("second")],
    role=role,
    sagemaker_session=session,
    predictor_cls=Predictor,
)
pipeline_predictor = pipeline.deploy(
    initial_instance_count=1, instance_type="ml.m5.large", endpoint_name="sdk-pipeline"
)
print("pipeline", pipeline_predictor.predict(b"x").decode())
# A Direct-mode endpoint (made by the test with boto3): the SDK reaches one container through
# initial_args, as SageMaker's guide shows.
direct = Predictor("sdk-direct", sagemaker_session=session)
print("direct", direct.predict(b"x", initial_args={"TargetContainerHostname": "b"}).decode())
for done in (predictor, pipeline_predictor):
    done.delete_model()
    done.delete_endpoint()
print("deleted")
