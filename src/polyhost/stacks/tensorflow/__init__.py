"""`polyhost/tensorflow`: a SavedModel served with TensorFlow Serving's REST semantics.

A model.tar.gz made for SageMaker's TensorFlow Serving container works unchanged: the program
speaks only the container contract (`/ping`, `/invocations` on SAGEMAKER_BIND_TO_PORT), loads
the SavedModels in-process with TensorFlow, and answers as TensorFlow Serving behind SageMaker's
front end would. Module map:

- `layout`: which models and versions the model directory holds (no TensorFlow).
- `attributes`: the `tfs-model-name` / `tfs-model-version` / `tfs-method` custom attributes.
- `payloads`: JSON, JSON lines and CSV bodies -> TensorFlow Serving requests; 415 otherwise.
- `jsontensor`: TensorFlow Serving's JSON <-> tensor rules (row and columnar formats, b64).
- `savedmodel`: the only module importing TensorFlow: loading and running signatures.
- `repository`: predict / classify / regress over the loaded models.
- `handlers`, `restapi`: `code/inference.py` handlers and the REST API their `rest_uri` targets.
- `service`: the toolkit `ModelService` tying these together; `config`: environment settings.
"""
