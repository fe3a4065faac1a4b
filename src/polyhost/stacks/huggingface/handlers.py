"""The Hugging Face stack's default handlers, as SageMaker's Hugging Face toolkit has them.

- `model_fn`: a transformers `pipeline` of the task `HF_TASK` over the model in the model dir
  (its files at the archive's root), or in the local folder `HF_MODEL_ID` names (an absolute
  path, or one relative to the model dir). A hub id (`distilbert-base-uncased`) cannot be
  fetched: no model hub is reachable from here, and the error says so. Without `HF_TASK` the
  task comes from config.json's architecture (`...ForSequenceClassification` is
  text-classification), as the toolkit infers it.
- `input_fn`: application/json `{"inputs": ..., "parameters": {...}}` (the toolkit's shape; a
  document without "inputs" is taken whole as the inputs); text/csv rows as a list of inputs;
  an image body (`image/png`, `image/jpeg`, ...) as a PIL image for image tasks.
- `predict_fn`: `pipeline(inputs, **parameters)`. Inputs a pipeline refuses (a ValueError or
  TypeError of its own) are the caller's error: 400 with its message.
- `output_fn`: the pipeline's answer as JSON (numpy values as numbers), or CSV for a list of
  flat objects (a header row of their keys).

transformers is imported on first use, never at module import, so the server listens first.
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Any

from polyhost.stacks.toolkit import codecs
from polyhost.stacks.toolkit.handlers import DefaultHandlers
from polyhost.stacks.toolkit.server import InvocationError

TASKS = (
    "text-classification",
    "token-classification",
    "question-answering",
    "fill-mask",
    "summarization",
    "translation",
    "text2text-generation",
    "text-generation",
    "feature-extraction",
    "zero-shot-classification",
    "image-classification",
    "sentence-similarity",
)
# config.json's architecture suffix -> the task it serves (the toolkit's inference of HF_TASK).
ARCHITECTURE_TASKS = (
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("ForImageClassification", "image-classification"),
    ("Model", "feature-extraction"),
)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/tiff", "image/bmp", "image/gif")
IMAGE_WEBP = "image/webp"
CONFIG = "config.json"


class ModelLoadError(Exception):
    """The model folder or the task cannot be used; the message says what to change."""


def model_folder(model_dir: str, environ: dict[str, str] | None = None) -> str:
    """Where the transformers files are: HF_MODEL_ID's local folder, else the model dir."""
    env = dict(os.environ) if environ is None else environ
    model_id = env.get("HF_MODEL_ID", "").strip()
    if not model_id:
        return model_dir
    candidates = [model_id] if os.path.isabs(model_id) else [os.path.join(model_dir, model_id)]
    candidates.append(os.path.abspath(model_id))
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, CONFIG)):
            return folder
    raise ModelLoadError(
        f"HF_MODEL_ID={model_id!r} is not a local folder with a {CONFIG}: polyhost reaches no "
        "model hub, so a hub id cannot be downloaded here. Put the model's files (saved with "
        "save_pretrained) in the model archive's root and leave HF_MODEL_ID unset, or set "
        "HF_MODEL_ID to a folder on this machine."
    )


def infer_task(folder: str) -> str:
    """The task from config.json's first architecture (see the module docstring)."""
    try:
        with open(os.path.join(folder, CONFIG), encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise ModelLoadError(
            f"No transformers model in {folder}: {CONFIG} cannot be read ({error}). Put the "
            "files save_pretrained writes at the model archive's root."
        ) from None
    for architecture in config.get("architectures") or []:
        for suffix, task in ARCHITECTURE_TASKS:
            if str(architecture).endswith(suffix):
                return task
    raise ModelLoadError(
        f"Set HF_TASK: the task cannot be told from {CONFIG}'s architectures "
        f"({config.get('architectures')}). Tasks: {', '.join(TASKS)}."
    )


def default_model_fn(model_dir: str) -> Any:
    folder = model_folder(model_dir)
    task = os.environ.get("HF_TASK", "").strip() or infer_task(folder)
    if not os.path.isfile(os.path.join(folder, CONFIG)):
        raise ModelLoadError(
            f"No transformers model in {folder}: it has no {CONFIG}. Put the files "
            "save_pretrained writes (config.json, the weights, the tokenizer) at the model "
            "archive's root, or point HF_MODEL_ID at a local folder holding them."
        )
    from transformers import pipeline

    try:
        return pipeline(task, model=folder, device=-1)
    except KeyError as error:  # an unknown task
        raise ModelLoadError(
            f"HF_TASK={task!r} is not a transformers pipeline task ({error}). Tasks: "
            f"{', '.join(TASKS)}."
        ) from None


def _image(body: bytes | str, content_type: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    raw = body.encode("latin-1") if isinstance(body, str) else body
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except (UnidentifiedImageError, OSError) as error:
        raise InvocationError(400, f"The {content_type} body is not an image: {error}") from None
    return image.convert("RGB")


def default_input_fn(input_data: bytes | str, content_type: str) -> Any:
    media = codecs.media_type(content_type) or codecs.JSON
    if len(input_data) == 0:
        raise InvocationError(400, f"The request body is empty; expected {media} data.")
    if media == codecs.JSON:
        try:
            return json.loads(input_data)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InvocationError(
                400, f"The application/json body is not valid JSON: {error}"
            ) from None
    if media == codecs.CSV:
        rows = codecs.csv_rows(input_data)
        return {"inputs": [row[0] if len(row) == 1 else row for row in rows]}
    if media in IMAGE_TYPES or media == IMAGE_WEBP:
        return {"inputs": _image(input_data, media)}
    raise InvocationError(
        415,
        f"Content type {content_type} is not supported by the Hugging Face container. "
        f"Supported: application/json, text/csv, {', '.join(IMAGE_TYPES)}. Please implement "
        "input_fn to deserialize the request data.",
    )


def default_predict_fn(data: Any, model: Any) -> Any:
    if isinstance(data, dict) and "inputs" in data:
        inputs = data["inputs"]
        parameters = data.get("parameters") or {}
    else:
        inputs, parameters = data, {}
    if not isinstance(parameters, dict):
        raise InvocationError(400, 'The "parameters" of the request must be a JSON object.')
    try:
        if isinstance(inputs, dict) and {"question", "context"} <= set(inputs):
            return model(**inputs, **parameters)  # question-answering's keyword form
        return model(inputs, **parameters)
    except (ValueError, TypeError, KeyError) as error:
        task = getattr(model, "task", "the")
        raise InvocationError(
            400, f"The {task} pipeline cannot take these inputs: {type(error).__name__}: {error}"
        ) from None


def _csv(prediction: Any) -> bytes:
    rows = prediction if isinstance(prediction, list) else [prediction]
    if rows and all(isinstance(row, list) for row in rows) and len(rows) == 1:
        rows = rows[0]  # one input's list of answers
    if not rows or not all(isinstance(row, dict) for row in rows):
        return codecs.encode_csv(prediction)
    keys = list(rows[0])
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(keys)
    writer.writerows([[_plain(row.get(key)) for key in keys] for row in rows])
    return stream.getvalue().encode("utf-8")


def _plain(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value


def default_output_fn(prediction: Any, accept: str) -> tuple[bytes, str]:
    for media in codecs.parse_accept(accept):
        if media in (codecs.JSON, codecs.ANY):
            return json.dumps(prediction, default=codecs.json_default).encode(), codecs.JSON
        if media == codecs.CSV:
            return _csv(prediction), codecs.CSV
    raise InvocationError(
        406,
        f"Accept type {accept} is not supported by the Hugging Face container. Supported: "
        "application/json, text/csv. Please implement an output_fn to serialize the response.",
    )


DEFAULTS = DefaultHandlers(
    model_fn=default_model_fn,
    input_fn=default_input_fn,
    predict_fn=default_predict_fn,
    output_fn=default_output_fn,
)
