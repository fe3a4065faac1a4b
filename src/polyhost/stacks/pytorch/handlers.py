"""The PyTorch stack's default handlers, as SageMaker's PyTorch inference toolkit defines them.

- `model_fn`: TorchScript `model.pt`, else the only `.pt`/`.pth` file in the model dir, loaded
  with `torch.jit.load` on the CPU. A plain `state_dict` needs the user's own `model_fn` (as in
  SageMaker's MNIST example), which builds the network and calls `load_state_dict`.
- `input_fn`: JSON and CSV become float32 tensors; NPY/NPZ/octet-stream keep their dtype.
  Besides a bare JSON array, JSON may be `{"instances": rows}` or `{"inputs": rows}` (what
  clients of TF Serving, KServe and the SageMaker Python SDK send).
- `predict_fn`: `model.eval()` and one forward pass under `torch.no_grad()`.
- `output_fn`: tensors (also inside tuples, lists, dicts) are encoded as the first supported type
  of Accept. NPY answers keep the tensor's dtype (SageMaker's toolkit goes through Python lists
  and answers float64); JSON and CSV are the same as SageMaker's. A JSON answer to
  `{"instances"|"inputs": rows}` is `{"predictions": [...]}`.

torch is imported on first use, never at module import, so the server starts listening first.
"""

from __future__ import annotations

import os
from typing import Any

from polyhost.stacks.toolkit import codecs
from polyhost.stacks.toolkit.context import Context
from polyhost.stacks.toolkit.environment import default_accept
from polyhost.stacks.toolkit.handlers import DefaultHandlers

DEFAULT_MODEL_FILENAME = "model.pt"
MODEL_EXTENSIONS = (".pt", ".pth")


class ModelLoadError(Exception):
    """The model file exists but is not TorchScript (or is damaged)."""


def _torch() -> Any:
    import torch

    return torch


def _is_model_file(path: str) -> bool:
    return os.path.isfile(path) and os.path.splitext(path)[1] in MODEL_EXTENSIONS


def default_model_fn(model_dir: str) -> Any:
    """TorchScript `model.pt`, else exactly one `.pt`/`.pth` file; SageMaker's messages else."""
    model_path = os.path.join(model_dir, DEFAULT_MODEL_FILENAME)
    if not os.path.exists(model_path):
        model_files = sorted(
            name for name in os.listdir(model_dir) if _is_model_file(os.path.join(model_dir, name))
        )
        if len(model_files) != 1:
            raise ValueError(
                f"Exactly one .pth or .pt file is required for PyTorch models: {model_files}"
            )
        model_path = os.path.join(model_dir, model_files[0])
    torch = _torch()
    try:
        model = torch.jit.load(model_path, map_location=torch.device("cpu"))
    except Exception as error:
        raise ModelLoadError(
            f"Failed to load {model_path}. Please ensure model is saved using torchscript. "
            "(A state_dict or a pickled nn.Module needs a model_fn in code/inference.py that "
            "builds the network and loads it.)"
        ) from error
    model.eval()
    return model


def _tensor(array: Any, as_float: bool, media: str = "request") -> Any:
    torch = _torch()
    if hasattr(array, "toarray"):  # a scipy sparse matrix
        array = array.toarray()
    if array.dtype.kind in "USO":
        raise codecs.not_numbers(
            media, array, "the default PyTorch input_fn needs numbers; write an input_fn for text"
        )
    if as_float:
        return torch.tensor(array, dtype=torch.float32)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


def default_input_fn(
    input_data: bytes | str, content_type: str, context: Context | None = None
) -> Any:
    """Decode the body into a tensor (float32 for JSON/CSV), or a dict of tensors for an .npz.

    The context remembers an enveloped JSON request, for `output_fn` to answer in kind.
    """
    data = codecs.decode_instances(input_data, content_type, context)
    media = codecs.media_type(content_type)
    as_float = media in codecs.UTF8_TYPES
    if isinstance(data, dict):
        return {name: _tensor(array, as_float, media) for name, array in data.items()}
    return _tensor(data, as_float, media)


def default_predict_fn(data: Any, model: Any) -> Any:
    """One forward pass in eval mode without autograd, on the CPU."""
    torch = _torch()
    with torch.no_grad():
        model.eval()
        return model(data)


def _plain(value: Any) -> Any:
    """Tensors (also nested in tuples, lists and dicts) -> numpy arrays."""
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def default_output_fn(
    prediction: Any, accept: str, context: Context | None = None
) -> tuple[bytes, str]:
    """Encode per Accept (406 when none is known), in the envelope the request came in."""
    return codecs.encode_in_kind(_plain(prediction), accept, default_accept(), context)


DEFAULTS = DefaultHandlers(
    model_fn=default_model_fn,
    input_fn=default_input_fn,
    predict_fn=default_predict_fn,
    output_fn=default_output_fn,
)
