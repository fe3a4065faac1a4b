"""SageMaker's capture format: one JSON line per invocation, and where a batch of them goes.

A record (docs/data-capture.md) is

    {"captureData": {"endpointInput": {"observedContentType", "mode": "INPUT", "data",
                                       "encoding"},
                     "endpointOutput": {..., "mode": "OUTPUT", ...}},
     "eventMetadata": {"eventId", "inferenceTime", "inferenceId"?},
     "eventVersion": "0"}

A body whose content type the config lists as CSV or JSON is captured as text (encoding CSV or
JSON); any other, or one that is not UTF-8 text after all, base64 (BASE64). A batch of one
endpoint variant's records of one hour is one object:
`{prefix}/{endpoint}/{variant}/yyyy/mm/dd/hh/{mm-ss-mmm}-{random}.jsonl`, the folders and the
file named for the first record's time (UTC), as SageMaker names its files.

What waits to be written is a `Row`, a plain tuple of bytes, strings and numbers: the event
loop builds one per sampled invocation without formatting anything, and a batch of them crosses
to the writer process with one `marshal` call (`writer.py`, `process.py`).
"""

from __future__ import annotations

import base64
import os
import time
import uuid

import orjson

DEFAULT_CONTENT_TYPE = "application/octet-stream"

# One sampled invocation as the runtime saw it: (target serial, variant, time.time() of the
# answer, request body, request content type, response body, response content type,
# inference id). A body is None when that side is not captured. The serial names the
# `CaptureTarget` it was taken under, so an update in between does not send it elsewhere.
Row = tuple[int, str, float, bytes | None, bytes | None, bytes | None, bytes | None, bytes | None]


def media_type(content_type: str) -> str:
    """`text/csv; charset=utf-8` -> `text/csv`: parameters do not change what the body is."""
    return content_type.split(";", 1)[0].strip().lower()


class RecordFormat:
    """Formats one destination's records (its CSV and JSON media types).

    Built with orjson from small dicts: about three times cheaper than escaping by hand with
    the standard library, and most of what is left is the body's own escaping, in C. What a
    content type means (its text, its encoding) is worked out once per distinct header value,
    and the last second's ISO time is kept, since a batch's records mostly share both. One per
    destination in the writer process (not thread-safe).
    """

    def __init__(self, csv: frozenset[str], js: frozenset[str]) -> None:
        self._csv = csv
        self._js = js
        self._types: dict[bytes | None, tuple[str, str]] = {}
        self._second = -1
        self._iso = ""

    def _type(self, content_type: bytes | None) -> tuple[str, str]:
        """(observedContentType, encoding) of a header value; kept (a few distinct values)."""
        known = self._types.get(content_type)
        if known is None:
            observed = (
                DEFAULT_CONTENT_TYPE if content_type is None else content_type.decode("latin-1")
            )
            kind = media_type(observed)
            encoding = "CSV" if kind in self._csv else "JSON" if kind in self._js else "BASE64"
            known = (observed, encoding)
            if len(self._types) < 64:  # a caller sending ever new types fills nothing
                self._types[content_type] = known
        return known

    def _side(self, mode: str, body: bytes, content_type: bytes | None) -> dict[str, str]:
        observed, encoding = self._type(content_type)
        if encoding != "BASE64":
            try:
                data = body.decode("utf-8")
            except UnicodeDecodeError:  # not the text it claims: kept whole, as base64
                encoding = "BASE64"
        if encoding == "BASE64":
            data = base64.b64encode(body).decode("ascii")
        return {"observedContentType": observed, "mode": mode, "data": data, "encoding": encoding}

    def _time(self, at: float) -> str:
        second = int(at)
        if second != self._second:
            self._second = second
            self._iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        return self._iso

    def line(self, row: Row, event: str) -> bytes:
        """The record's JSON line, newline included; `event` is its eventId."""
        data: dict[str, dict[str, str]] = {}
        _, _, at, request, request_type, response, response_type, inference_id = row
        if request is not None:
            data["endpointInput"] = self._side("INPUT", request, request_type)
        if response is not None:
            data["endpointOutput"] = self._side("OUTPUT", response, response_type)
        metadata = {"eventId": event, "inferenceTime": self._time(at)}
        if inference_id is not None:
            metadata["inferenceId"] = inference_id.decode("utf-8", "replace")
        return orjson.dumps(
            {"captureData": data, "eventMetadata": metadata, "eventVersion": "0"},
            option=orjson.OPT_APPEND_NEWLINE,
        )


def event_ids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs' text, from one `os.urandom` call and without building
    `uuid.UUID`s (together about a third of the cost of `str(uuid.uuid4())` each)."""
    h = os.urandom(16 * count).hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{'89ab'[int(h[i + 16], 16) & 3]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


def record_line(row: Row, csv: frozenset[str], js: frozenset[str]) -> bytes:
    """One record's JSON line (`RecordFormat.line` without its caches)."""
    return RecordFormat(csv, js).line(row, event_ids(1)[0])


def hour_folder(at: float) -> str:
    """`yyyy/mm/dd/hh` (UTC) of a record's time: the records of one hour share a folder."""
    return time.strftime("%Y/%m/%d/%H", time.gmtime(at))


def object_key(prefix: str, endpoint: str, variant: str, at: float) -> str:
    """The key of a batch whose first record is at `at`; unique by its random part."""
    moment = time.gmtime(at)
    millis = int(at * 1000) % 1000
    name = f"{moment.tm_min:02d}-{moment.tm_sec:02d}-{millis:03d}-{uuid.uuid4()}.jsonl"
    parts = [prefix] if prefix else []
    return "/".join([*parts, endpoint, variant, hour_folder(at), name])
