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
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from polyhost.capture.config import CaptureTarget

DEFAULT_CONTENT_TYPE = "application/octet-stream"


@dataclass(slots=True)
class Captured:
    """One sampled invocation as the runtime saw it, waiting to be written (None: that side is
    not captured). `target` is the capture config it was taken under, so an update in
    between does not send it elsewhere."""

    target: CaptureTarget
    variant: str
    at: float  # time.time() of the answer
    request: bytes | None
    request_type: bytes | None
    response: bytes | None
    response_type: bytes | None
    inference_id: bytes | None

    @property
    def size(self) -> int:
        """What it holds in memory: the bodies it captures."""
        return len(self.request or b"") + len(self.response or b"")


def media_type(content_type: str) -> str:
    """`text/csv; charset=utf-8` -> `text/csv`: parameters do not change what the body is."""
    return content_type.split(";", 1)[0].strip().lower()


def _side(
    mode: bytes, body: bytes, content_type: bytes | None, csv: frozenset[str], js: frozenset[str]
) -> bytes:
    """One side's JSON object, as bytes. Written by hand rather than by `json.dumps` of a
    dict: the writer formats every captured invocation, and this is about three times
    cheaper (the body's escaping, in C, is most of what is left)."""
    observed = content_type.decode("latin-1") if content_type is not None else DEFAULT_CONTENT_TYPE
    kind = media_type(observed)
    encoding = b"CSV" if kind in csv else b"JSON" if kind in js else b"BASE64"
    data = b""
    if encoding != b"BASE64":
        try:
            data = _escape(body.decode("utf-8")).encode("ascii")
        except UnicodeDecodeError:  # not the text it claims: kept whole, as base64
            encoding = b"BASE64"
    if encoding == b"BASE64":
        data = b'"' + base64.b64encode(body) + b'"'
    return b"".join(
        (
            b'{"observedContentType":',
            _escape(observed).encode("ascii"),
            b',"mode":"',
            mode,
            b'","data":',
            data,
            b',"encoding":"',
            encoding,
            b'"}',
        )
    )


class RecordFormat:
    """Formats records; keeps the last second's ISO time, since a batch's records mostly
    share it. One per writer thread (not thread-safe)."""

    def __init__(self) -> None:
        self._second = -1
        self._iso = b""

    def _time(self, at: float) -> bytes:
        second = int(at)
        if second != self._second:
            self._second = second
            self._iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second)).encode()
        return self._iso

    def line(self, captured: Captured, csv: frozenset[str], js: frozenset[str]) -> bytes:
        """The record's JSON line, newline included. `csv`, `js`: media types as
        `media_type` gives them."""
        parts = [b'{"captureData":{']
        if captured.request is not None:
            parts += (
                b'"endpointInput":',
                _side(b"INPUT", captured.request, captured.request_type, csv, js),
            )
        if captured.response is not None:
            if captured.request is not None:
                parts.append(b",")
            parts += (
                b'"endpointOutput":',
                _side(b"OUTPUT", captured.response, captured.response_type, csv, js),
            )
        parts += (b'},"eventMetadata":{"eventId":"', event_id(), b'","inferenceTime":"')
        parts.append(self._time(captured.at))
        if captured.inference_id is not None:
            parts += (
                b'","inferenceId":',
                _escape(captured.inference_id.decode("utf-8", "replace")).encode("ascii"),
                b'},"eventVersion":"0"}\n',
            )
        else:
            parts.append(b'"},"eventVersion":"0"}\n')
        return b"".join(parts)


def event_id() -> bytes:
    """A random (version 4) UUID's text, without building a `uuid.UUID` (a third of the
    cost)."""
    h = os.urandom(16).hex()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}".encode("ascii")


def record_line(captured: Captured, csv: frozenset[str], js: frozenset[str]) -> bytes:
    """One record's JSON line (`RecordFormat.line` without its cache)."""
    return RecordFormat().line(captured, csv, js)


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
