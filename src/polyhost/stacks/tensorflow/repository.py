"""The loaded models and TensorFlow Serving's three methods over them.

Both entry points share this: `/invocations` (after SageMaker's content-type conversions) and the
internal TensorFlow Serving REST API that `code/inference.py` handlers post to. Requests arrive
as parsed JSON; answers leave as the JSON bytes TensorFlow Serving would write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from polyhost.stacks.tensorflow.errors import TfsError
from polyhost.stacks.tensorflow.jsontensor import (
    check_shapes,
    examples_request,
    predict_inputs,
    render_classify,
    render_predict,
    render_regress,
)

if TYPE_CHECKING:
    from polyhost.stacks.tensorflow.savedmodel import SavedModel

DEFAULT_SIGNATURE = "serving_default"


class ModelRepository:
    """Model name -> version -> loaded SavedModel, with a default model for unnamed requests."""

    def __init__(self, models: dict[str, dict[int, SavedModel]], default_name: str) -> None:
        self.models = models
        self.default_name = default_name

    def resolve(self, name: str | None, version: str | None) -> SavedModel:
        """The model asked for: the named (or default) model, its given (or highest) version."""
        model_name = name or self.default_name
        versions = self.models.get(model_name)
        if version is not None and not (version.isascii() and version.isdigit()):
            raise TfsError(f"model version must be a whole number, got {version!r}")
        if not versions:
            wanted = (
                f"Specific({model_name}, {int(version)})" if version else f"Latest({model_name})"
            )
            known = ", ".join(sorted(self.models))
            raise TfsError(f"Servable not found for request: {wanted} (models: {known})", 404)
        if version is None:
            return versions[max(versions)]
        number = int(version)
        if number not in versions:
            known = ", ".join(str(v) for v in sorted(versions))
            raise TfsError(
                f"Servable not found for request: Specific({model_name}, {number}) (versions: "
                f"{known})",
                404,
            )
        return versions[number]

    def handle(
        self, method: str, request: Any, name: str | None = None, version: str | None = None
    ) -> bytes:
        """Run `method` (predict/classify/regress) for a parsed TensorFlow Serving request."""
        if method not in ("predict", "classify", "regress"):
            raise TfsError(f"tfs-method must be predict, classify or regress, got {method!r}")
        model = self.resolve(name, version)
        if not isinstance(request, dict):
            raise TfsError("the request must be a JSON object (TensorFlow Serving's format)")
        signature_name = request.get("signature_name", DEFAULT_SIGNATURE)
        if not isinstance(signature_name, str):
            raise TfsError("'signature_name' key must be a string value.")
        signature_name = signature_name or DEFAULT_SIGNATURE
        if method == "predict":
            return self._predict(model, signature_name, request)
        return self._classify_or_regress(model, method, signature_name, request)

    @staticmethod
    def _predict(model: SavedModel, signature_name: str, request: dict[str, Any]) -> bytes:
        signature = model.signature(signature_name)
        fmt, arrays = predict_inputs(request, signature.inputs)
        check_shapes(arrays, signature.inputs, signature_name)
        return render_predict(model.run(signature, arrays), fmt)

    @staticmethod
    def _classify_or_regress(
        model: SavedModel, method: str, signature_name: str, request: dict[str, Any]
    ) -> bytes:
        from polyhost.stacks.tensorflow import savedmodel

        signature = model.signature(signature_name)
        wanted = savedmodel.CLASSIFY_METHOD if method == "classify" else savedmodel.REGRESS_METHOD
        actual = model.method_name(signature_name)
        kind = "classification" if method == "classify" else "regression"
        if actual != wanted:
            raise TfsError(
                f"Expected {kind} signature method_name to be {wanted}. Was: {actual} (signature "
                f"'{signature_name}'; name a {method} signature with signature_name)"
            )
        if "inputs" not in signature.inputs:
            raise TfsError(f"No {kind} inputs found in SignatureDef '{signature_name}'")
        examples = examples_request(request, method)
        serialized = savedmodel.serialize_examples(examples)
        outputs = model.run(signature, {"inputs": serialized})
        count = len(examples)
        if method == "regress":
            values = outputs.get("outputs")
            if values is None:
                raise TfsError(f"No regression outputs found in SignatureDef '{signature_name}'")
            if values.shape not in ((count,), (count, 1)):
                raise TfsError(
                    f"Expected output Tensor shape to be either [batch_size] or [batch_size, 1] "
                    f"but got {list(values.shape)}"
                )
            return render_regress(values)
        classes, scores = outputs.get("classes"), outputs.get("scores")
        if classes is None and scores is None:
            raise TfsError(
                f"Expected classification signature outputs to contain classes or scores "
                f"('{signature_name}' has {', '.join(sorted(outputs))})"
            )
        for tensor in (classes, scores):
            if tensor is not None and (tensor.ndim != 2 or tensor.shape[0] != count):
                raise TfsError(
                    f"Expected Tensor shape: [{count} num_classes] but got {list(tensor.shape)}"
                )
        if classes is not None and scores is not None and classes.shape != scores.shape:
            raise TfsError(
                f"Tensors class and score should match in shape, but had {list(classes.shape)} "
                f"and {list(scores.shape)}"
            )
        if classes is not None:
            labels = [
                [item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
                 for item in row]
                for row in classes.tolist()
            ]  # fmt: skip
        else:
            assert scores is not None
            labels = [[""] * scores.shape[1] for _ in range(count)]
        return render_classify(labels, scores)

    def status(self, name: str, version: str | None) -> dict[str, Any]:
        """TensorFlow Serving's GetModelStatus answer: every (or the one) version AVAILABLE."""
        model = self.resolve(name, version)
        versions = [model.version] if version is not None else sorted(self.models[model.name])
        return {
            "model_version_status": [
                {
                    "version": str(number),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
                for number in sorted(versions, reverse=True)
            ]
        }
