"""Request/response codecs of SageMaker's framework containers: bytes <-> numpy.

Decoding (request bodies the default `input_fn` understands):
  application/json          a (nested) JSON array of numbers (or strings) -> ndarray
  text/csv                  rows of comma-separated values -> 2-D ndarray (one row -> shape (1, n);
                            numbers when every field parses as one, empty fields -> NaN, else str)
  application/x-npy         an .npy file -> ndarray (no pickled objects)
  application/x-npz         an .npz file -> its only array, a {name: array} dict for several, or a
                            scipy sparse matrix for a file written by `scipy.sparse.save_npz`
  application/octet-stream  .npy or .npz bytes (recognised by their magic) or else the raw bytes
                            as a 1-D uint8 array
Encoding (responses of the default `output_fn`): the same types, from numpy arrays, lists,
scalars (and anything with `tolist()`, e.g. tensors); octet-stream passes bytes through and
writes other values as .npy.

Request envelopes (`decode_instances`, `encode_in_kind`; the scikit-learn and PyTorch stacks
use them): clients written for TF Serving, KServe or the SageMaker Python SDK send JSON rows as
`{"instances": rows}` or `{"inputs": rows}`, rows being a list of instances. Those are accepted
beside the bare array, and answered in kind, `{"predictions": [...]}`, when the answer is JSON
(CSV and NPY answers have no envelope, so they stay as for a bare array). SageMaker's own
scikit-learn container refuses the envelope; a bare array answers as there.

Errors carry the status SageMaker's containers answer: an unsupported request type is 415, a
body that is not valid for its type is 400, an unsupported Accept is 406 (what the scikit-learn
container, built on sagemaker-containers, answers; the newer inference toolkit answers 500 for
both unsupported types, polyhost prefers the more precise statuses). Pickled objects are never
loaded from a request: a request body is untrusted input.
"""

from __future__ import annotations

import csv
import io
import json
import weakref
import zipfile
from collections.abc import Iterable
from typing import Any

import numpy as np

from polyhost.stacks.toolkit import fastjson
from polyhost.stacks.toolkit.context import Context
from polyhost.stacks.toolkit.server import InvocationError

JSON = "application/json"
CSV = "text/csv"
NPY = "application/x-npy"
NPZ = "application/x-npz"
OCTET_STREAM = "application/octet-stream"
ANY = "*/*"
UTF8_TYPES = frozenset({JSON, CSV})
SUPPORTED = (JSON, CSV, NPY, NPZ, OCTET_STREAM)

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_SPARSE_KEYS = frozenset({"format", "shape", "data"})


def media_type(content_type: str | None) -> str:
    """`Application/JSON; charset=utf-8` -> `application/json` (empty when missing)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def parse_accept(accept: str) -> list[str]:
    """The media types of an Accept header in the client's order (quality values ignored)."""
    return [media for media in (media_type(part) for part in accept.split(",")) if media]


def unsupported_content_type(content_type: str) -> InvocationError:
    return InvocationError(
        415,
        f"Content type {content_type} is not supported by this framework. Supported: "
        f"{', '.join(SUPPORTED)}. Please implement input_fn to deserialize the request data "
        "or an output_fn to serialize the response.",
    )


def unsupported_accept(accept: str) -> InvocationError:
    return InvocationError(
        406,
        f"Accept type {accept} is not supported by this framework. Supported: "
        f"{', '.join(SUPPORTED)}. Please implement an output_fn to serialize the response.",
    )


def choose_accept(accept: str, default: str = JSON) -> str:
    """The first type of `accept` this module can encode (`*/*` means `default`); else 406."""
    for media in parse_accept(accept):
        if media == ANY:
            return media_type(default) if media_type(default) in SUPPORTED else JSON
        if media in SUPPORTED:
            return media
    raise unsupported_accept(accept)


# ---------------------------------------------------------------- decoding


def decode(body: bytes | str, content_type: str) -> Any:
    """Decode a request body of `content_type` (see the module docstring for the shapes)."""
    media = media_type(content_type)
    decoder = _DECODERS.get(media)
    if decoder is None:
        raise unsupported_content_type(content_type)
    if len(body) == 0:
        raise InvocationError(400, f"The request body is empty; expected {media} data.")
    return decoder(body)


def _text(body: bytes | str, media: str) -> str:
    if isinstance(body, str):
        return body
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvocationError(400, f"The {media} body is not valid UTF-8: {error}") from None


def _bytes(body: bytes | str) -> bytes:
    return body.encode("utf-8") if isinstance(body, str) else body


def decode_json(body: bytes | str) -> Any:
    """A JSON array (of arrays) of numbers or strings -> ndarray."""
    dense = _dense(body, ())
    if dense is not None:
        return dense[1]
    return _array(_parse_json(body), JSON)


def _dense(body: bytes | str, keys: tuple[str, ...]) -> tuple[str | None, Any] | None:
    """(envelope key or None, array) for a body of dense numbers (`fastjson.read_document`).

    What `_array` makes of the parsed body, without building its lists; None for any other
    body, which then takes the exact path below.
    """
    if len(body) < fastjson.DENSE_MIN_BYTES:
        return None
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    found = fastjson.read_document(raw, keys)
    if found is None:
        return None
    key, dense, _ = found
    return key, dense.array


def _parse_json(body: bytes | str) -> Any:
    try:
        return fastjson.loads(_text(body, JSON))
    except json.JSONDecodeError as error:
        raise InvocationError(
            400, f"The application/json body is not valid JSON: {error}"
        ) from None


def _array(data: Any, media: str) -> Any:
    if isinstance(data, dict):
        raise InvocationError(
            400,
            f"The {media} body is a JSON object; the default input_fn expects an array of "
            "numbers (e.g. [[1.0, 2.0]]). Write an input_fn to accept other shapes.",
        )
    try:
        array = np.asarray(data)
    except ValueError as error:  # ragged nesting
        raise InvocationError(
            400, f"The {media} body is not a rectangular array: {error}"
        ) from None
    if array.dtype == object:
        raise InvocationError(
            400,
            f"The {media} body mixes numbers, strings or objects; the default input_fn expects "
            "an array of numbers (or of strings).",
        )
    return array


def csv_rows(body: bytes | str) -> list[list[str]]:
    """The rows of a CSV body (blank lines skipped), all of one width; 400 saying why not."""
    text = _text(body, CSV)
    try:
        rows = [row for row in csv.reader(io.StringIO(text), strict=True) if row]
    except csv.Error as error:
        raise InvocationError(400, f"The text/csv body is not valid CSV: {error}") from None
    if not rows:
        raise InvocationError(400, "The text/csv body has no rows.")
    width = len(rows[0])
    for number, row in enumerate(rows, start=1):
        if len(row) != width:
            raise InvocationError(
                400,
                f"The text/csv body is not rectangular: row {number} has {len(row)} fields, "
                f"row 1 has {width}.",
            )
    return rows


def _plain_csv_floats(body: bytes | str) -> Any:
    """The common body read fast: unquoted, rectangular rows of numbers with no empty field,
    by numpy's C reader (about 8x cheaper than the csv module and a string array for 100 rows
    of 64 numbers). None for anything else, which the full reader then reads or refuses,
    naming the row and column; numpy's reader is the stricter of the two, so nothing it
    accepts reads otherwise there."""
    text = _text(body, CSV)
    if '"' in text or "\r" in text.replace("\r\n", ""):
        return None
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line]
    if not lines:
        return None
    try:
        return np.loadtxt(
            lines, delimiter=",", ndmin=2, dtype=np.float64, comments=None, quotechar=None
        )
    except ValueError:  # an empty field (NaN), one that is no number, or ragged rows
        return None


def decode_csv(body: bytes | str) -> Any:
    """CSV rows -> 2-D ndarray: floats when every field is a number (empty -> NaN), else str."""
    fast = _plain_csv_floats(body)
    if fast is not None:
        return fast
    strings = np.array(csv_rows(body), dtype=str)
    try:
        return _csv_floats(strings)
    except ValueError:
        return strings


def _csv_floats(strings: Any) -> Any:
    return np.where(np.char.strip(strings) == "", "nan", strings).astype(np.float64)


def decode_csv_numbers(body: bytes | str) -> Any:
    """CSV rows -> 2-D float64 ndarray (empty fields -> NaN); 400 naming the first field that
    is no number, for models that take numbers only."""
    fast = _plain_csv_floats(body)
    if fast is not None:
        return fast
    strings = np.array(csv_rows(body), dtype=str)
    try:
        return _csv_floats(strings)
    except ValueError:
        raise not_numbers(CSV, strings) from None


def first_non_number(values: Any) -> tuple[int, int, str] | None:
    """(row, column, text), 1-based, of the first element of a 1- or 2-D array of strings (or
    objects) that does not read as a number; None when every one does. Empty text is a missing
    value (NaN), as the CSV decoder reads it."""
    array = np.asarray(values)
    if array.ndim == 0:
        array = array.reshape(1, 1)
    elif array.ndim == 1:
        array = array.reshape(1, -1)
    elif array.ndim > 2:
        array = array.reshape(array.shape[0], -1)
    for row_number, row in enumerate(array, start=1):
        for column_number, value in enumerate(row, start=1):
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            if not text.strip():
                continue
            try:
                float(text)
            except ValueError:
                return row_number, column_number, text
    return None


def not_numbers(media: str, values: Any, detail: str | None = None) -> InvocationError:
    """The 400 for a body whose values the model needs as numbers: which row and column, and
    what is there (`detail`: what the model said, when it refused them)."""
    found = first_non_number(values)
    if found is None:
        where = "it holds values that are not numbers"
    else:
        row, column, text = found
        shown = text if len(text) <= 40 else text[:40] + "..."
        where = f"row {row}, column {column} is {shown!r}, not a number"
    message = f"The {media} body cannot be read as numbers: {where}."
    if detail:
        message += f" ({detail})"
    return InvocationError(400, message)


def decode_npy(body: bytes | str) -> Any:
    try:
        return np.load(io.BytesIO(_bytes(body)), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InvocationError(
            400, f"The application/x-npy body is not a valid .npy array: {error}"
        ) from None


def decode_npz(body: bytes | str) -> Any:
    raw = _bytes(body)
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            names = list(archive.files)
            arrays = {name: archive[name] for name in names}
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as error:
        raise InvocationError(
            400, f"The application/x-npz body is not a valid .npz archive: {error}"
        ) from None
    if set(names) >= _SPARSE_KEYS:
        return _sparse(raw)
    if not names:
        raise InvocationError(400, "The application/x-npz body holds no arrays.")
    if len(names) == 1:
        return arrays[names[0]]
    return arrays


def _sparse(raw: bytes) -> Any:
    # scikit-learn brings scipy; only sparse payloads need it, so it is imported here.
    try:
        import scipy.sparse  # type: ignore[import-untyped]
    except ImportError:
        raise InvocationError(
            415, "This .npz body is a scipy sparse matrix, but scipy is not installed here."
        ) from None
    try:
        return scipy.sparse.load_npz(io.BytesIO(raw))
    except (ValueError, OSError, KeyError) as error:
        raise InvocationError(400, f"The sparse .npz body cannot be read: {error}") from None


def decode_octet_stream(body: bytes | str) -> Any:
    raw = _bytes(body)
    if raw.startswith(_NPY_MAGIC):
        return decode_npy(raw)
    if raw.startswith(_ZIP_MAGIC):
        return decode_npz(raw)
    return np.frombuffer(raw, dtype=np.uint8)


_DECODERS = {
    JSON: decode_json,
    CSV: decode_csv,
    NPY: decode_npy,
    NPZ: decode_npz,
    OCTET_STREAM: decode_octet_stream,
}


# ---------------------------------------------------------------- encoding


def encode(value: Any, accept: str) -> bytes:
    """Encode `value` as `accept`, one type that `choose_accept` returned; else 406."""
    encoder = _ENCODERS.get(media_type(accept))
    if encoder is None:
        raise unsupported_accept(accept)
    try:
        return encoder(value)
    except InvocationError:
        raise
    except (TypeError, ValueError) as error:
        raise InvocationError(
            500, f"The prediction cannot be encoded as {media_type(accept)}: {error}"
        ) from None


def json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_json(value: Any) -> bytes:
    if isinstance(value, np.ndarray):
        value = value.tolist()
    return json.dumps(value, default=json_default).encode("utf-8")


def encode_csv(value: Any) -> bytes:
    """One line per row; a 1-D prediction (one value per input row) is one value per line."""
    array = _as_array(value)
    if array.ndim == 0:
        array = array.reshape(1, 1)
    elif array.ndim == 1:
        array = array.reshape(-1, 1)
    elif array.ndim > 2:
        raise InvocationError(
            500,
            f"A {array.ndim}-dimensional prediction cannot be written as text/csv; ask for "
            "application/json or application/x-npy, or write an output_fn.",
        )
    stream = io.StringIO()
    csv.writer(stream, lineterminator="\n").writerows(_csv_rows(array))
    return stream.getvalue().encode("utf-8")


def _csv_rows(array: Any) -> Iterable[Iterable[str]]:
    # numpy's str() writes float32 as its shortest repr (0.1, not 0.10000000149011612).
    return array.astype(str) if array.dtype != object else [[str(v) for v in row] for row in array]


def encode_npy(value: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, _as_array(value), allow_pickle=False)
    return buffer.getvalue()


def encode_npz(value: Any) -> bytes:
    buffer = io.BytesIO()
    if isinstance(value, dict):
        np.savez(buffer, **{str(key): _as_array(item) for key, item in value.items()})
    elif hasattr(value, "tocsr") and hasattr(value, "nnz"):  # a scipy sparse matrix
        import scipy.sparse  # type: ignore[import-untyped]

        scipy.sparse.save_npz(buffer, value)
    else:
        np.savez(buffer, _as_array(value))
    return buffer.getvalue()


def encode_octet_stream(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return encode_npy(value)


def _as_array(value: Any) -> Any:
    """numpy values as they are; tensors through their own `numpy()`; the rest via asarray."""
    if isinstance(value, (np.ndarray, np.generic)):
        return np.asarray(value)
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    if hasattr(value, "tolist"):
        value = value.tolist()
    return np.asarray(value)


_ENCODERS = {
    JSON: encode_json,
    CSV: encode_csv,
    NPY: encode_npy,
    NPZ: encode_npz,
    OCTET_STREAM: encode_octet_stream,
}


# ---------------------------------------------------------------- request envelopes

INSTANCES = "instances"
INPUTS = "inputs"
PREDICTIONS = "predictions"
ENVELOPE_KEYS = (INSTANCES, INPUTS)
ACCEPTED_JSON = (
    'Send a JSON array of rows (e.g. [[1.0, 2.0]]), {"instances": rows} or {"inputs": rows}, '
    "or write an input_fn to accept other shapes."
)

# The requests (their handler contexts) that came in an envelope, until their answer is written.
# Weak, so a context is forgotten with its request; the chain in between (a user's predict_fn
# among it) sees plain rows and never this mark.
_ENVELOPED: weakref.WeakSet[Context] = weakref.WeakSet()


def decode_instances(body: bytes | str, content_type: str, request: Context | None = None) -> Any:
    """`decode`, also taking JSON `{"instances": rows}` or `{"inputs": rows}` (see above).

    `request` is the handler's context: an enveloped request is remembered by it, so that
    `encode_in_kind` answers `{"predictions": ...}` to it and a bare array to any other.
    """
    if media_type(content_type) != JSON or len(body) == 0:
        return decode(body, content_type)
    dense = _dense(body, ENVELOPE_KEYS)
    if dense is not None:
        key, rows = dense
        if key is not None and request is not None:
            _ENVELOPED.add(request)
        return rows
    data = _parse_json(body)
    if not isinstance(data, dict):
        return _array(data, JSON)
    rows = _array(_envelope_rows(data), JSON)
    if request is not None:
        _ENVELOPED.add(request)
    return rows


def _envelope_rows(data: dict[str, Any]) -> list[Any]:
    """The instances of `{"instances": rows}` / `{"inputs": rows}`; 400 saying why otherwise."""
    keys = [key for key in ENVELOPE_KEYS if key in data]
    if not keys:
        found = ", ".join(json.dumps(key) for key in data) or "no keys"
        raise InvocationError(
            400,
            f'The application/json body is a JSON object without "instances" or "inputs" '
            f"(it has {found}). {ACCEPTED_JSON}",
        )
    if len(keys) > 1:
        raise InvocationError(
            400,
            'The application/json body has both "instances" and "inputs"; send the rows '
            f"under one of them. {ACCEPTED_JSON}",
        )
    key = keys[0]
    others = [name for name in data if name != key]
    if others:  # e.g. TF Serving's signature_name: ignoring it would answer another question
        raise InvocationError(
            400,
            f'The application/json body has keys besides "{key}": '
            f"{', '.join(json.dumps(name) for name in others)}. {ACCEPTED_JSON}",
        )
    rows = data[key]
    if not isinstance(rows, list):
        raise InvocationError(
            400,
            f'The "{key}" of the application/json body is {_json_kind(rows)}, not a list of '
            f'instances (e.g. {{"{key}": [[1.0, 2.0]]}}). {ACCEPTED_JSON}',
        )
    if not rows:
        raise InvocationError(
            400,
            f'The "{key}" list of the application/json body is empty; send one or more instances.',
        )
    return rows


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def encode_in_kind(
    prediction: Any, accept: str, default: str, request: Context | None = None
) -> tuple[bytes, str]:
    """Encode as the first type of `accept` the codecs know (`*/*` is `default`; 406 for none).

    A JSON answer to a request `decode_instances` found enveloped is `{"predictions": ...}`.
    """
    chosen = choose_accept(accept, default)
    if chosen == JSON and request is not None and request in _ENVELOPED:
        prediction = {PREDICTIONS: prediction}
    return encode(prediction, chosen), chosen
