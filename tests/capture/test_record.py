"""SageMaker's capture format (`capture/record.py`): records, encodings, object keys."""

from __future__ import annotations

import base64
import json
import re
import time

from polyhost.capture.config import capture_target, split_destination
from polyhost.capture.record import Row, event_ids, media_type, object_key, record_line
from polyhost.control.seam import DataCaptureSpec, EndpointSpec, VariantSpec

CSV = frozenset({"text/csv"})
JSON = frozenset({"application/json"})
AT = 1_700_000_000.123  # 2023-11-14T22:13:20.123Z


def target(**capture: object) -> object:
    spec = EndpointSpec(
        endpoint_name="ep",
        endpoint_arn="arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep",
        endpoint_config_name="cfg",
        variants=(VariantSpec("AllTraffic", "m", (), "Serial", execution_role_arn="arn:role"),),
        revision=1,
        data_capture=DataCaptureSpec(
            **{"destination": "s3://bucket/capture/", "sampling_percentage": 100, **capture}  # type: ignore[arg-type]
        ),
    )
    return capture_target(spec)


def captured(request: bytes | None, request_type: bytes | None, **extra: object) -> Row:
    made = target()
    assert made is not None
    fields: dict[str, object] = {
        "serial": made.serial,
        "variant": "AllTraffic",
        "at": AT,
        "request": request,
        "request_type": request_type,
        "response": b"answer",
        "response_type": b"text/csv",
        "inference_id": None,
        **extra,
    }
    return tuple(fields.values())  # type: ignore[return-value]


def test_a_record_in_sagemakers_format() -> None:
    line = record_line(
        captured(b'{"a": 1}', b"application/json; charset=utf-8", inference_id=b"id-1"), CSV, JSON
    )
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = json.loads(line)
    assert record["eventVersion"] == "0"
    assert record["captureData"] == {
        "endpointInput": {
            "observedContentType": "application/json; charset=utf-8",
            "mode": "INPUT",
            "data": '{"a": 1}',
            "encoding": "JSON",
        },
        "endpointOutput": {
            "observedContentType": "text/csv",
            "mode": "OUTPUT",
            "data": "answer",
            "encoding": "CSV",
        },
    }
    metadata = record["eventMetadata"]
    assert metadata["inferenceTime"] == "2023-11-14T22:13:20Z"
    assert metadata["inferenceId"] == "id-1"
    assert re.fullmatch(r"[0-9a-f-]{36}", metadata["eventId"])


def test_other_types_and_text_that_is_not_utf8_are_base64() -> None:
    binary = bytes(range(256))
    record = json.loads(record_line(captured(binary, b"application/x-npy"), CSV, JSON))
    side = record["captureData"]["endpointInput"]
    assert side["encoding"] == "BASE64"
    assert base64.b64decode(side["data"]) == binary
    assert "inferenceId" not in record["eventMetadata"]
    claimed = json.loads(record_line(captured(b"\xff\xfe", b"text/csv"), CSV, JSON))
    assert claimed["captureData"]["endpointInput"]["encoding"] == "BASE64"
    untyped = json.loads(record_line(captured(b"x", None), CSV, JSON))
    assert untyped["captureData"]["endpointInput"]["observedContentType"] == (
        "application/octet-stream"
    )


def test_one_side_only() -> None:
    record = json.loads(record_line(captured(None, b"text/csv"), CSV, JSON))
    assert list(record["captureData"]) == ["endpointOutput"]


def test_object_keys_follow_sagemakers_layout() -> None:
    key = object_key("capture/run", "ep", "AllTraffic", AT)
    assert re.fullmatch(
        r"capture/run/ep/AllTraffic/2023/11/14/22/13-20-123-[0-9a-f-]{36}\.jsonl", key
    )
    assert object_key("", "ep", "v", AT).startswith("ep/v/2023/11/14/22/")
    assert key != object_key("capture/run", "ep", "AllTraffic", AT)  # the random part


def test_media_types_and_destinations() -> None:
    assert media_type(" Text/CSV ; charset=utf-8") == "text/csv"
    assert split_destination("s3://bucket/a/b/") == ("bucket", "a/b")
    assert split_destination("s3://bucket") == ("bucket", "")


def test_nothing_to_capture_makes_no_target() -> None:
    assert target(enabled=False) is None
    assert target(sampling_percentage=0) is None
    assert target(capture_input=False, capture_output=False) is None
    made = target(csv_content_types=("Text/CSV",))
    assert made is not None
    assert made.csv_types == frozenset({"text/csv"})  # type: ignore[attr-defined]
    assert made.role("AllTraffic") == "arn:role"  # type: ignore[attr-defined]
    assert time.time() > AT


def test_text_that_is_not_ascii_stays_text() -> None:
    body = '{"city": "Zürich", "note": "line\\nbreak \\u2028"}'.encode()
    record = json.loads(record_line(captured(body, b"application/json"), CSV, JSON))
    side = record["captureData"]["endpointInput"]
    assert side["encoding"] == "JSON" and side["data"].encode() == body


def test_event_ids_are_random_version_4_uuids() -> None:
    ids = event_ids(1000)
    assert len(set(ids)) == 1000
    for made in ids[:50]:
        assert re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", made
        )
