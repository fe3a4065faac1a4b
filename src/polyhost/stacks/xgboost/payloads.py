"""Request bodies of SageMaker's XGBoost container -> a dense float array or a sparse matrix.

- `text/csv`: rows of numbers, no header and no label (SageMaker's `label_size` parameter is
  for training and ignored); an empty field is a missing value (NaN).
- `text/libsvm` (also `text/x-libsvm`): one row per line, `[label] index:value ...`; the label,
  when there, is ignored (the SDK and SageMaker's docs send a dummy one); indices are column
  numbers as XGBoost's own libsvm reader takes them.
- `application/json`: a JSON array of rows (or one row), or `{"instances": rows}` /
  `{"inputs": rows}`, a row being a list of numbers or `{"features": [...]}` (the JSON request
  shape of SageMaker's built-in algorithms).
- `application/x-recordio-protobuf`: SageMaker's RecordIO-protobuf records (`recordio`), dense
  or sparse.

A body this cannot read is the caller's error: 400, naming the row and column (or record).
No XGBoost here: scipy (which XGBoost depends on) holds the sparse rows.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from polyhost.stacks.toolkit import codecs
from polyhost.stacks.toolkit.server import InvocationError
from polyhost.stacks.xgboost.recordio import RecordIOError, read_rows

CSV = "text/csv"
LIBSVM = "text/libsvm"
X_LIBSVM = "text/x-libsvm"
JSON = "application/json"
RECORDIO = "application/x-recordio-protobuf"
SUPPORTED = (CSV, LIBSVM, JSON, RECORDIO)


def unsupported(content_type: str) -> InvocationError:
    return InvocationError(
        415,
        f"Content type {content_type} is not supported by the XGBoost container. Supported: "
        f"{', '.join(SUPPORTED)}. Please implement input_fn to deserialize the request data.",
    )


def decode(body: bytes | str, content_type: str) -> Any:
    """The rows of a request body: a 2-D float ndarray, or a scipy CSR matrix (libsvm, sparse
    RecordIO)."""
    media = codecs.media_type(content_type) or JSON
    if media not in (CSV, LIBSVM, X_LIBSVM, JSON, RECORDIO):
        raise unsupported(content_type)
    if len(body) == 0:
        raise InvocationError(400, f"The request body is empty; expected {media} data.")
    if media == CSV:
        return codecs.decode_csv_numbers(body)
    if media in (LIBSVM, X_LIBSVM):
        return decode_libsvm(_text(body, media), media)
    if media == JSON:
        return decode_json(body)
    return decode_recordio(body.encode("utf-8") if isinstance(body, str) else body)


def _text(body: bytes | str, media: str) -> str:
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvocationError(400, f"The {media} body is not valid UTF-8: {error}") from None


def _sparse(values: list[float], columns: list[int], pointers: list[int], width: int) -> Any:
    import scipy.sparse  # type: ignore[import-untyped]

    return scipy.sparse.csr_matrix(
        (np.asarray(values, dtype=np.float32), columns, pointers),
        shape=(len(pointers) - 1, width),
    )


def decode_libsvm(text: str, media: str = LIBSVM) -> Any:
    values: list[float] = []
    columns: list[int] = []
    pointers = [0]
    for line_number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if ":" not in words[0]:
            words = words[1:]  # the label
        for position, word in enumerate(words, start=1):
            index, colon, value = word.partition(":")
            try:
                if not colon:
                    raise ValueError(word)
                column = int(index)
                number = float(value)
                if column < 0:
                    raise ValueError(word)
            except ValueError:
                raise InvocationError(
                    400,
                    f"The {media} body cannot be read: row {len(pointers)} (line {line_number}), "
                    f"entry {position} is {word[:40]!r}, not index:value.",
                ) from None
            columns.append(column)
            values.append(number)
        pointers.append(len(values))
    if len(pointers) == 1:
        raise InvocationError(400, f"The {media} body has no rows.")
    return _sparse(values, columns, pointers, max(columns, default=-1) + 1)


def _json_rows(data: Any) -> list[Any]:
    if isinstance(data, dict):
        keys = [key for key in codecs.ENVELOPE_KEYS if key in data]
        if len(keys) != 1:
            raise InvocationError(
                400,
                'The application/json body is an object without one of "instances" or '
                '"inputs"; send a JSON array of rows, {"instances": rows} or '
                '{"instances": [{"features": [...]}, ...]}.',
            )
        data = data[keys[0]]
    if not isinstance(data, list) or not data:
        raise InvocationError(400, "The application/json body holds no rows.")
    if not isinstance(data[0], (list, dict)):
        data = [data]  # one row
    rows = []
    for number, row in enumerate(data, start=1):
        if isinstance(row, dict):
            if "features" not in row:
                raise InvocationError(
                    400,
                    f'The application/json body\'s row {number} is an object without "features".',
                )
            row = row["features"]
        rows.append(row)
    return rows


def decode_json(body: bytes | str) -> Any:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvocationError(
            400, f"The application/json body is not valid JSON: {error}"
        ) from None
    rows = _json_rows(data)
    width = len(rows[0]) if isinstance(rows[0], list) else None
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, list) or len(row) != width:
            raise InvocationError(
                400,
                f"The application/json rows are not rectangular: row {number} is not a list "
                f"of {width} values.",
            )
    try:
        return np.asarray(
            [[np.nan if value is None else value for value in row] for row in rows],
            dtype=np.float64,
        )
    except (TypeError, ValueError):
        raise codecs.not_numbers(JSON, np.asarray(rows, dtype=object)) from None


def decode_recordio(body: bytes) -> Any:
    try:
        rows = read_rows(body)
    except RecordIOError as error:
        raise InvocationError(
            400, f"The application/x-recordio-protobuf body cannot be read: {error}"
        ) from None
    if all(row.width is None and not row.keys for row in rows):
        widths = {len(row.values) for row in rows}
        if len(widths) != 1:
            raise InvocationError(
                400,
                "The application/x-recordio-protobuf records are not all of one width: "
                f"{sorted(widths)}.",
            )
        return np.vstack([row.values for row in rows])
    values: list[float] = []
    columns: list[int] = []
    pointers = [0]
    width = 0
    for row in rows:
        keys = row.keys if row.keys or row.width is not None else list(range(len(row.values)))
        values.extend(row.values.tolist())
        columns.extend(keys)
        pointers.append(len(values))
        width = max(width, row.width or 0, max(keys, default=-1) + 1)
    return _sparse(values, columns, pointers, width)
