"""`application/x-recordio-protobuf` bodies: SageMaker's RecordIO-framed `aialgs.data.Record`s.

The format the SageMaker Python SDK writes (`write_numpy_to_dense_tensor`,
`write_spmatrix_to_sparse_tensor`) and its built-in algorithms read. Each record is framed as

    uint32 magic 0xCED7230A, uint32 length (little-endian; the top 3 bits are flags), the
    record, zero padding to a multiple of 4 bytes

and holds one row: `Record.features["values"]`, a Float32Tensor, Float64Tensor or Int32Tensor
with the row's `values` (dense), or `values` + `keys` (column indices) + `shape` ([columns])
for a sparse row. The protobuf messages are read here directly (a few dozen lines) rather than
through the protobuf runtime and generated code, which the stack would need only for this.

    message Record { map<string, Value> features = 1; map<string, Value> label = 2; ... }
    message Value { oneof value { Float32Tensor float32_tensor = 2;
                                  Float64Tensor float64_tensor = 3;
                                  Int32Tensor int32_tensor = 7; Bytes bytes = 9; } }
    message Float32Tensor { repeated float values = 1 [packed]; repeated uint64 keys = 2
                            [packed]; repeated uint64 shape = 3 [packed]; }
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

MAGIC = 0xCED7230A
_LENGTH_MASK = (1 << 29) - 1
# Value's tensor fields -> the numpy dtype of their packed values (int32 is a varint).
_TENSORS: dict[int, np.dtype[Any]] = {2: np.dtype("<f4"), 3: np.dtype("<f8"), 7: np.dtype("int64")}


class RecordIOError(ValueError):
    """The body is not RecordIO-framed protobuf records; the message says where it breaks."""


@dataclass
class Row:
    """One record's features: dense `values`, or sparse `values` at `keys` in `width` columns."""

    values: npt.NDArray[np.float64]
    keys: list[int] = field(default_factory=list)
    width: int | None = None


def _varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if position >= len(data):
            raise RecordIOError("a protobuf varint runs past the end of its record")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
        if shift > 63:
            raise RecordIOError("a protobuf varint is longer than 10 bytes")


def _fields(data: bytes) -> list[tuple[int, int, bytes | int]]:
    """(field number, wire type, bytes for length-delimited / int for varint) of a message."""
    found: list[tuple[int, int, bytes | int]] = []
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
            found.append((number, wire, value))
        elif wire == 2:
            length, position = _varint(data, position)
            if position + length > len(data):
                raise RecordIOError("a protobuf field runs past the end of its record")
            found.append((number, wire, data[position : position + length]))
            position += length
        elif wire == 5:
            found.append((number, wire, data[position : position + 4]))
            position += 4
        elif wire == 1:
            found.append((number, wire, data[position : position + 8]))
            position += 8
        else:
            raise RecordIOError(f"unsupported protobuf wire type {wire}")
    return found


def _varints(data: bytes) -> list[int]:
    values: list[int] = []
    position = 0
    while position < len(data):
        value, position = _varint(data, position)
        values.append(value)
    return values


def _tensor(number: int, data: bytes) -> Row:
    dtype = _TENSORS[number]
    values: list[float] = []
    keys: list[int] = []
    shape: list[int] = []
    for field_number, wire, value in _fields(data):
        if field_number == 1:
            if dtype.kind == "f":
                raw = value if isinstance(value, bytes) else b""
                if wire == 2 and len(raw) % dtype.itemsize:
                    raise RecordIOError("a tensor's packed values are cut short")
                values.extend(np.frombuffer(raw, dtype=dtype).tolist())
            else:  # int32: varints, negative ones sign-extended to 64 bits
                ints = _varints(value) if isinstance(value, bytes) else [int(value)]
                values.extend(v - (1 << 64) if v >= 1 << 63 else v for v in ints)
        elif field_number in (2, 3):
            ints = _varints(value) if isinstance(value, bytes) else [int(value)]
            (keys if field_number == 2 else shape).extend(ints)
    array = np.asarray(values, dtype=np.float64)
    if keys or shape:
        if len(keys) != len(array):
            raise RecordIOError(f"a sparse row has {len(array)} values but {len(keys)} keys")
        return Row(array, keys, shape[0] if shape else None)
    return Row(array)


def _features(record: bytes) -> Row:
    for number, wire, entry in _fields(record):
        if number != 1 or wire != 2 or not isinstance(entry, bytes):
            continue  # labels, uid, metadata: not the features
        key = b""
        value = b""
        for entry_number, _, item in _fields(entry):
            if entry_number == 1 and isinstance(item, bytes):
                key = item
            elif entry_number == 2 and isinstance(item, bytes):
                value = item
        if key != b"values":
            continue
        for tensor_number, _, tensor in _fields(value):
            if tensor_number in _TENSORS and isinstance(tensor, bytes):
                return _tensor(tensor_number, tensor)
        raise RecordIOError('the "values" feature holds no float32, float64 or int32 tensor')
    raise RecordIOError('a record has no "values" feature')


def records(body: bytes) -> list[bytes]:
    """The records of a RecordIO body."""
    found: list[bytes] = []
    position = 0
    while position < len(body):
        if position + 8 > len(body):
            raise RecordIOError(f"record {len(found) + 1}: the body ends inside its header")
        magic, length = struct.unpack_from("<II", body, position)
        if magic != MAGIC:
            raise RecordIOError(
                f"record {len(found) + 1} (byte {position}) does not start with RecordIO's "
                "magic number 0xCED7230A"
            )
        length &= _LENGTH_MASK
        start = position + 8
        if start + length > len(body):
            raise RecordIOError(f"record {len(found) + 1}: the body ends inside the record")
        found.append(body[start : start + length])
        position = start + ((length + 3) & ~3)
    return found


def read_rows(body: bytes) -> list[Row]:
    """One Row per record; RecordIOError naming the record that cannot be read."""
    rows: list[Row] = []
    for number, record in enumerate(records(body), start=1):
        try:
            rows.append(_features(record))
        except RecordIOError as error:
            raise RecordIOError(f"record {number}: {error}") from None
    if not rows:
        raise RecordIOError("the body holds no records")
    return rows
