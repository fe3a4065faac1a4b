"""The event-stream encoder against botocore's own parser (`EventStreamBuffer`) and the
sagemaker-runtime client's event parsing: what polyhost writes is what boto3 reads."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any, cast

import botocore.parsers
import botocore.session
import pytest
from botocore.eventstream import (
    ChecksumMismatch,
    EventStream,
    EventStreamBuffer,
    EventStreamMessage,
)
from botocore.exceptions import EventStreamError
from hypothesis import given, settings
from hypothesis import strategies as st

from polyhost.http.aws import eventstream


def headers_of(message: EventStreamMessage) -> dict[str, Any]:
    return cast(dict[str, Any], message.headers)  # typed as int by botocore's stubs


def decode(data: bytes, *, pieces: int = 1) -> list[EventStreamMessage]:
    """Parse `data` fed in `pieces` slices, as bytes arrive off a socket."""
    buffer = EventStreamBuffer()
    messages: list[EventStreamMessage] = []
    step = max(1, len(data) // pieces)
    for start in range(0, len(data), step):
        buffer.add_data(data[start : start + step])
        messages.extend(buffer)
    return messages


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=4096), min_size=1, max_size=8), pieces=st.integers(1, 50)
)
def test_payload_parts_decode_as_botocore_reads_them(payloads: list[bytes], pieces: int) -> None:
    data = b"".join(eventstream.payload_part(payload) for payload in payloads)
    messages = decode(data, pieces=pieces)
    assert [m.payload for m in messages] == payloads
    for message in messages:
        assert headers_of(message) == {
            ":event-type": "PayloadPart",
            ":content-type": "application/octet-stream",
            ":message-type": "event",
        }
        assert message.to_response_dict()["status_code"] == 200


@settings(max_examples=100, deadline=None)
@given(code=st.sampled_from(["StreamBroken", "ModelInvocationTimeExceeded"]), text=st.text())
def test_a_model_stream_error_decodes_with_its_code_and_message(code: str, text: str) -> None:
    (message,) = decode(eventstream.model_stream_error(code, text))
    assert headers_of(message)[":message-type"] == "exception"
    assert headers_of(message)[":exception-type"] == "ModelStreamError"
    assert json.loads(message.payload) == {"Message": text, "ErrorCode": code}
    assert message.to_response_dict()["status_code"] == 400


def test_the_layout_is_prelude_crc_headers_payload_crc() -> None:
    data = eventstream.payload_part(b"abc")
    total, headers_length = struct.unpack(">II", data[:8])
    assert total == len(data)
    assert struct.unpack(">I", data[8:12])[0] == zlib.crc32(data[:8])
    assert struct.unpack(">I", data[-4:])[0] == zlib.crc32(data[:-4])
    assert data[12 + headers_length : -4] == b"abc"


def test_a_corrupted_message_is_refused_by_botocore() -> None:
    data = bytearray(eventstream.payload_part(b"hello"))
    data[-6] ^= 0xFF
    with pytest.raises(ChecksumMismatch):
        decode(bytes(data))


def test_a_payload_past_botocores_limit_is_split() -> None:
    data = b"y" * (eventstream.MAX_PAYLOAD + 10)
    events = list(eventstream.payload_parts(data))
    assert len(events) == 2
    assert b"".join(m.payload for e in events for m in decode(e)) == data
    with pytest.raises(ValueError):
        eventstream.payload_part(data)


class _Raw:
    """A response body's `stream()`, as urllib3 gives botocore."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def stream(self) -> Any:
        yield from self._chunks

    def close(self) -> None:
        return None


def boto3_events(data: bytes) -> EventStream[Any]:
    """The EventStream boto3's sagemaker-runtime client makes of a response body."""
    session = botocore.session.get_session()
    client = session.create_client("sagemaker-runtime", region_name="us-east-1")
    model = client.meta.service_model.operation_model("InvokeEndpointWithResponseStream")
    assert model.output_shape is not None
    shape = cast(Any, model.output_shape.members["Body"])
    parser = botocore.parsers.EventStreamJSONParser()
    return EventStream(
        _Raw([data[i : i + 7] for i in range(0, len(data), 7)]), shape, parser, model.name
    )


def test_boto3_yields_the_parts_then_raises_the_model_stream_error() -> None:
    data = (
        eventstream.payload_part(b"one")
        + eventstream.payload_part(b"two")
        + eventstream.model_stream_error("StreamBroken", "the container left")
    )
    got = []
    with pytest.raises(EventStreamError) as excinfo:
        for event in boto3_events(data):
            got.append(event["PayloadPart"]["Bytes"])
    assert got == [b"one", b"two"]
    assert excinfo.value.response["Error"] == {
        "Code": "ModelStreamError",
        "Message": "the container left",
    }


def test_boto3_raises_an_internal_stream_failure() -> None:
    with pytest.raises(EventStreamError) as excinfo:
        list(boto3_events(eventstream.internal_stream_failure("oops")))
    assert excinfo.value.response["Error"]["Code"] == "InternalStreamFailure"


@settings(max_examples=100, deadline=None)
@given(payload=st.binary(max_size=70_000))
def test_a_framed_part_is_the_same_message(payload: bytes) -> None:
    before, after = eventstream.payload_part_frame(payload)
    assert before + payload + after == eventstream.payload_part(payload)
