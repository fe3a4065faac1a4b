"""Turn an `/invocations` body into a TensorFlow Serving request, as SageMaker's front end does.

SageMaker's TensorFlow container (its nginx script) accepts:

- `application/json`: a TensorFlow Serving request (an object with `instances`, `inputs` or
  `examples`) passes through unchanged. Any other JSON becomes `{"instances": ...}`: a list
  whose first item is a list is the instances list itself (`[[1, 2], [3, 4]]` is two rows);
  anything else is one instance (`[1, 2, 3]` is *one* row of three values, `{"x": 1}` one row
  of named inputs). Several JSON documents separated by whitespace are read as JSON lines.
- `application/jsonlines` (also `application/jsons`): one instance per non-empty line; a single
  line holding a TensorFlow Serving request passes through.
- `text/csv`: one instance per row, a row of one field is a scalar instance. When the first
  field of the body is a number every field is a number, otherwise every field is a string.

Extensions over SageMaker, to be friendlier without changing what worked there: media type
parameters (`; charset=utf-8`) and case are ignored; a missing Content-Type means JSON (what
SageMaker's Python handlers assume); a JSON list of objects is taken as instances with named
inputs. Anything else answers 415, as SageMaker does.

The answer is JSON; it is labelled `application/jsonlines` when the Accept header lists that
type and `application/json` otherwise (SageMaker only relabels, it never re-encodes).
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from polyhost.stacks.tensorflow.errors import TfsError
from polyhost.stacks.tensorflow.jsontensor import is_base64_object
from polyhost.stacks.toolkit import fastjson

JSON = "application/json"
JSON_LINES = ("application/jsonlines", "application/jsons")
CSV = "text/csv"
TFS_KEYS = ("instances", "inputs", "examples")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")


def media_type(content_type: str | None) -> str | None:
    """`application/json; charset=utf-8` -> `application/json`; None/empty -> None."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def is_tfs_request(document: Any) -> bool:
    return isinstance(document, dict) and any(key in document for key in TFS_KEYS)


def _is_named_instance(value: Any) -> bool:
    """An object of named inputs (not TensorFlow Serving's `{"b64": ...}` binary value)."""
    return isinstance(value, dict) and not is_base64_object(value)


def decode_invocation(body: bytes, content_type: str | None, *, dense: bool = False) -> Any:
    """The TensorFlow Serving request (parsed JSON) that a SageMaker request body stands for.

    With `dense`, a JSON body of dense numbers comes back as `dense_request` makes it (the
    serving path); without, every value is plain parsed JSON.
    """
    media = media_type(content_type) or JSON
    if media not in (JSON, CSV, *JSON_LINES):
        raise TfsError(
            f"Unsupported Media Type: {content_type} (send application/json, "
            "application/jsonlines or text/csv, or convert it in code/inference.py)",
            415,
        )
    if media == JSON and dense:
        request = dense_request(body)
        if request is not None:
            return request
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TfsError(f"the request body is not UTF-8 text: {error}") from None
    if media == CSV:
        return {"instances": csv_instances(text)}
    if media in JSON_LINES:
        return json_lines_request(text)
    return json_request(text)


def dense_request(body: bytes) -> dict[str, Any] | None:
    """The TensorFlow Serving request of a JSON body of dense numbers, read without its lists.

    `{"instances"|"inputs": numbers}` (with or without a `signature_name`) and a bare array of
    rank 2 or more (SageMaker's instances list) come out as `json_request` would make them,
    the numbers as a `fastjson.DenseJson` that `jsontensor` takes for the nested lists. A bare
    array of rank 1 is one instance (`[value]`). None for any other body.
    """
    found = fastjson.read_document(body, TFS_KEYS[:2], ("signature_name",))
    if found is None:
        return None
    key, dense, extras = found
    if key is None:
        return {"instances": dense if dense.array.ndim > 1 else dense.wrapped()}
    return {key: dense, **extras}


def parse_request(body: bytes) -> Any:
    """A TensorFlow Serving REST request body, parsed (dense numbers as in `dense_request`)."""
    found = fastjson.read_document(body, TFS_KEYS[:2], ("signature_name",))
    if found is not None and found[0] is not None:
        key, dense, extras = found
        return {key: dense, **extras}
    return parse_json(body.decode("utf-8", errors="replace"))


def parse_json(text: str, where: str = "") -> Any:
    """json.loads with TensorFlow Serving's error wording (NaN and Infinity are accepted)."""
    if not text.strip():
        raise TfsError(f"JSON Parse error{where}: The document is empty")
    try:
        return fastjson.loads(text)
    except json.JSONDecodeError as error:
        raise TfsError(f"JSON Parse error{where}: {error.msg} at offset: {error.pos}") from None
    except RecursionError:
        raise TfsError(f"JSON Parse error{where}: the document is nested too deeply") from None


def json_request(text: str) -> Any:
    documents = json_documents(text)
    if len(documents) > 1:  # several documents: SageMaker reads them as JSON lines
        return {"instances": documents}
    document = documents[0]
    if is_tfs_request(document):
        return document
    if (
        isinstance(document, list)
        and document
        and (isinstance(document[0], list) or _is_named_instance(document[0]))
    ):
        return {"instances": document}
    return {"instances": [document]}


def json_lines_request(text: str) -> Any:
    documents = json_documents(text)
    if len(documents) == 1 and is_tfs_request(documents[0]):
        return documents[0]
    return {"instances": documents}


_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"\s*")


def json_documents(text: str) -> list[Any]:
    """Every JSON document in `text`, separated by newlines or any other whitespace."""
    documents: list[Any] = []
    position = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    if position == len(text):
        raise TfsError("JSON Parse error: The document is empty")
    try:  # the usual case, one document, through the fast reader
        return [fastjson.loads(text)]
    except (json.JSONDecodeError, RecursionError):
        pass  # several documents, or an error that the loop below words
    while position < len(text):
        try:
            document, position = _DECODER.raw_decode(text, position)
        except json.JSONDecodeError as error:
            raise TfsError(f"JSON Parse error: {error.msg} at offset: {error.pos}") from None
        except RecursionError:
            raise TfsError("JSON Parse error: the document is nested too deeply") from None
        documents.append(document)
        position = _SPACE.match(text, position).end()  # type: ignore[union-attr]
    return documents


def csv_instances(text: str) -> list[Any]:
    rows = [
        [field.strip() for field in row]
        for row in csv.reader(io.StringIO(text))
        if any(field.strip() for field in row)
    ]
    if not rows:
        raise TfsError("the CSV body has no rows")
    numeric = bool(_NUMBER.fullmatch(rows[0][0]))
    instances: list[Any] = []
    for number, row in enumerate(rows, 1):
        values: list[Any] = row
        if numeric:
            values = [_csv_number(field, number, column) for column, field in enumerate(row, 1)]
        instances.append(values[0] if len(values) == 1 else values)
    return instances


def _csv_number(field: str, row: int, column: int) -> int | float:
    if _INTEGER.fullmatch(field):
        return int(field)
    if _NUMBER.fullmatch(field):
        return float(field)
    raise TfsError(
        f"CSV row {row}, column {column}: {field[:50]!r} is not a number (the body starts with "
        "a number, so every field must be one)"
    )


def response_content_type(accept: str | None) -> str:
    """`application/jsonlines` when the client lists it in Accept, else `application/json`."""
    accepted = [media_type(part) for part in (accept or "").split(",")]
    for kind in JSON_LINES:
        if kind in accepted:
            return kind
    return JSON
