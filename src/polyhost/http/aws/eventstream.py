"""AWS's event-stream framing (`application/vnd.amazon.eventstream`), the encoding side.

InvokeEndpointWithResponseStream answers with a stream of these messages, and botocore's
`EventStreamBuffer` is what reads them, so the layout here is exactly the one it parses:

    prelude      total length (uint32, big-endian, the whole message), headers length (uint32)
    prelude CRC  CRC32 of the 8 prelude bytes
    headers      each: name length (uint8), name, value type (uint8: 7 = string),
                 value length (uint16), value
    payload      the event's bytes
    message CRC  CRC32 of everything before it

Only string headers are written: the three every event carries (`:event-type`,
`:content-type`, `:message-type`) and `:exception-type` for an exception. A payload is at most
`MAX_PAYLOAD` bytes, botocore's own limit; `payload_parts` splits anything longer, so whatever
a container writes in one piece reaches the client as parts it can read.

The two CRCs and the header block are assembled with one `b"".join` and two `zlib.crc32`
calls per message: a PayloadPart costs a few microseconds besides the copy of its payload.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator

# botocore's EventStreamBuffer refuses larger ones (_MAX_PAYLOAD_LENGTH, _MAX_HEADERS_LENGTH).
MAX_PAYLOAD = 24 * 1024 * 1024
MAX_HEADERS = 128 * 1024
_STRING = 7
_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")
# Prelude, prelude CRC and message CRC.
_OVERHEAD = _PRELUDE.size + 2 * _CRC.size


def _header(name: bytes, value: bytes) -> bytes:
    if len(name) > 255 or len(value) > 0xFFFF:
        raise ValueError(f"event-stream header {name!r} is too long")
    return b"".join((bytes((len(name),)), name, bytes((_STRING,)), len(value).to_bytes(2), value))


def encode_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The header block of a message: string headers, in the order given."""
    block = b"".join(_header(name, value) for name, value in headers)
    if len(block) > MAX_HEADERS:
        raise ValueError(f"event-stream headers are {len(block)} bytes, more than {MAX_HEADERS}")
    return block


def encode_message(headers: bytes, payload: bytes | memoryview) -> bytes:
    """One message from an encoded header block (`encode_headers`) and its payload."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"event-stream payload is {len(payload)} bytes, more than {MAX_PAYLOAD}")
    total = _OVERHEAD + len(headers) + len(payload)
    prelude = _PRELUDE.pack(total, len(headers))
    prelude_crc = zlib.crc32(prelude)
    head = b"".join((prelude, _CRC.pack(prelude_crc), headers))
    crc = zlib.crc32(payload, zlib.crc32(head))
    return b"".join((head, payload, _CRC.pack(crc)))


# The header block of every PayloadPart: the payload's content type is the raw bytes of the
# container's answer, as SageMaker sends it.
PAYLOAD_PART_HEADERS = encode_headers(
    [
        (b":event-type", b"PayloadPart"),
        (b":content-type", b"application/octet-stream"),
        (b":message-type", b"event"),
    ]
)


def payload_part_frame(data: bytes | memoryview) -> tuple[bytes, bytes]:
    """A PayloadPart carrying `data` as the bytes before and after it (prelude, its CRC and
    the headers; the message CRC), so a large payload is written as it is, never copied into
    a message of its own: `before + data + after` is `payload_part(data)`."""
    if len(data) > MAX_PAYLOAD:
        raise ValueError(f"event-stream payload is {len(data)} bytes, more than {MAX_PAYLOAD}")
    headers = PAYLOAD_PART_HEADERS
    prelude = _PRELUDE.pack(_OVERHEAD + len(headers) + len(data), len(headers))
    before = b"".join((prelude, _CRC.pack(zlib.crc32(prelude)), headers))
    return before, _CRC.pack(zlib.crc32(data, zlib.crc32(before)))


def payload_part(data: bytes | memoryview) -> bytes:
    """A PayloadPart event whose `Bytes` are `data` (at most MAX_PAYLOAD bytes)."""
    return encode_message(PAYLOAD_PART_HEADERS, data)


def payload_parts(data: bytes) -> Iterator[bytes]:
    """PayloadPart events carrying `data`, split where it is longer than MAX_PAYLOAD."""
    if len(data) <= MAX_PAYLOAD:
        yield payload_part(data)
        return
    view = memoryview(data)
    for start in range(0, len(data), MAX_PAYLOAD):
        yield payload_part(view[start : start + MAX_PAYLOAD])


def exception_event(exception_type: str, fields: dict[str, str]) -> bytes:
    """An exception message (`:message-type` exception): botocore raises it from the stream's
    iterator as an EventStreamError whose code is `exception_type`."""
    headers = encode_headers(
        [
            (b":exception-type", exception_type.encode("ascii")),
            (b":content-type", b"application/json"),
            (b":message-type", b"exception"),
        ]
    )
    return encode_message(headers, json.dumps(fields).encode())


def model_stream_error(error_code: str, message: str) -> bytes:
    """The ModelStreamError event that ends a stream broken after its first part: ErrorCode
    `StreamBroken` or `ModelInvocationTimeExceeded`, as SageMaker's model documents."""
    return exception_event("ModelStreamError", {"Message": message, "ErrorCode": error_code})


def internal_stream_failure(message: str) -> bytes:
    """The InternalStreamFailure event: the stream failed for a reason of the server's own."""
    return exception_event("InternalStreamFailure", {"Message": message})
