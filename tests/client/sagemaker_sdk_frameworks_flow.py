"""Run by tests/client/test_sagemaker_sdk_frameworks.py under the SageMaker Python SDK's own venv.

One of the SDK's framework model classes, as SageMaker's guide writes it: the model data in S3,
the container image the SDK picks itself (`image_uris.retrieve`, offline, from its bundled
configuration), `.deploy()`, the class's own predictor (its serializer and deserializer),
`Predictor.predict()`, then delete. polyhost is reached only through the clients handed to
`sagemaker.Session`; S3 (where the SDK repacks and uploads code) is the user's S3-compatible
server, named by the standard `AWS_ENDPOINT_URL_S3` setting.

    sagemaker_sdk_frameworks_flow.py URL BUCKET CASES_JSON CLASS

CASES_JSON holds, per class, the model data URL, the entry point, the request and what the
answer must be. Prints the image URI the SDK chose, the answer, and "deleted".
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import boto3
import numpy as np
import sagemaker
from sagemaker.huggingface import HuggingFaceModel
from sagemaker.pytorch import PyTorchModel
from sagemaker.sklearn import SKLearnModel
from sagemaker.tensorflow import TensorFlowModel
from sagemaker.xgboost import XGBoostModel

url, bucket, cases_path, which = sys.argv[1:5]
with open(cases_path, encoding="utf-8") as file:
    case: dict[str, Any] = json.load(file)[which]

# The README's Session setup: polyhost for SageMaker and its runtime, S3 from the environment.
boto = boto3.Session(region_name="us-east-1")
session = sagemaker.Session(
    boto_session=boto,
    sagemaker_client=boto.client("sagemaker", endpoint_url=url),
    sagemaker_runtime_client=boto.client("sagemaker-runtime", endpoint_url=url),
    default_bucket=bucket,
)
role = "arn:aws:iam::123456789012:role/polyhost"
data = case["model_data"]
entry = case.get("entry_point")
model: sagemaker.model.Model
if which == "tensorflow":
    model = TensorFlowModel(
        model_data=data, role=role, framework_version="2.16.1", sagemaker_session=session
    )
elif which == "pytorch":
    model = PyTorchModel(
        model_data=data,
        role=role,
        entry_point=entry,
        framework_version="2.1.0",
        py_version="py310",
        sagemaker_session=session,
    )
elif which == "sklearn":
    model = SKLearnModel(
        model_data=data,
        role=role,
        entry_point=entry,
        framework_version="1.2-1",
        py_version="py3",
        sagemaker_session=session,
    )
elif which == "xgboost":
    model = XGBoostModel(
        model_data=data,
        role=role,
        entry_point=entry,
        framework_version="1.7-1",
        py_version="py3",
        sagemaker_session=session,
    )
elif which == "huggingface":
    model = HuggingFaceModel(
        model_data=data,
        role=role,
        transformers_version="4.37.0",
        pytorch_version="2.1.0",
        py_version="py310",
        env={"HF_TASK": "text-classification"},
        sagemaker_session=session,
    )
else:
    raise SystemExit(f"unknown class {which!r}")

name = f"sdk-{which}"
predictor = model.deploy(initial_instance_count=1, instance_type="ml.m5.large", endpoint_name=name)
described = session.sagemaker_client.describe_model(ModelName=model.name)
print("image", described["PrimaryContainer"]["Image"])


def close(got: Any, want: Any) -> bool:
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    return got.shape == want.shape and bool(np.allclose(got, want, rtol=1e-3, atol=1e-4))


request = case["request"]
if which == "tensorflow":
    answer = predictor.predict({"instances": request})
    ok = close(answer["predictions"], case["expected"])
elif which in ("pytorch", "sklearn"):
    answer = predictor.predict(np.asarray(request, dtype=np.float32))
    ok = close(answer, case["expected"])
    answer = np.asarray(answer).tolist()
elif which == "xgboost":
    answer = predictor.predict(request)  # a libsvm line; the SDK's CSVDeserializer answers rows
    ok = close([float(value) for row in answer for value in row], case["expected"])
else:
    answer = predictor.predict({"inputs": request})
    first = answer[0]
    ok = first["label"] in case["labels"] and 0.0 <= first["score"] <= 1.0
    ok = ok and not math.isnan(first["score"])
print("answer", json.dumps(answer))
if not ok:
    raise SystemExit(f"{which}: unexpected answer {answer!r}, wanted {case.get('expected')!r}")
print("checked")
predictor.delete_model()
predictor.delete_endpoint()
print("deleted")
