"""What the runtime adapter captures for one endpoint: its DataCaptureSpec, made ready for the
hot path and the writer.

Built once per serving revision (`service.DataCapture.serving_changed`), never per invocation:
the sampler, the destination split into bucket and prefix, the content types as sets of media
types, and each variant's model role (records are written as that role, as an asynchronous
answer is: `asyncinf/credentials.py`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from polyhost.capture.record import media_type
from polyhost.capture.sampler import Sampler
from polyhost.control.seam import DataCaptureSpec, EndpointSpec

# Serials of targets, unique for the server's lifetime: a queued row names its target by one.
_serials = itertools.count(1)

# A target as the writer process gets it (`marshal`-able): serial, endpoint, bucket, prefix,
# {variant: role}, CSV media types, JSON media types.
TargetWire = tuple[int, str, str, str, dict[str, str | None], list[str], list[str]]


def split_destination(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix/` -> (`bucket`, `some/prefix`); the control plane took only
    s3:// URLs naming a bucket."""
    parts = urlsplit(uri)
    return parts.netloc, parts.path.strip("/")


@dataclass(frozen=True, eq=False)
class CaptureTarget:
    endpoint: str
    spec: DataCaptureSpec
    bucket: str
    prefix: str
    sampler: Sampler
    capture_input: bool
    capture_output: bool
    csv_types: frozenset[str]
    json_types: frozenset[str]
    roles: dict[str, str | None] = field(default_factory=dict)  # variant -> ExecutionRoleArn
    serial: int = field(default_factory=lambda: next(_serials))

    def role(self, variant: str) -> str | None:
        return self.roles.get(variant)

    def wire(self) -> TargetWire:
        """What the writer process needs to format and write this target's rows."""
        return (
            self.serial,
            self.endpoint,
            self.bucket,
            self.prefix,
            dict(self.roles),
            sorted(self.csv_types),
            sorted(self.json_types),
        )


def capture_target(spec: EndpointSpec) -> CaptureTarget | None:
    """The endpoint's capture, or None when nothing of it is to be captured (no
    DataCaptureConfig, EnableCapture false, or 0 %): then the adapter does not even draw."""
    capture = spec.data_capture
    if capture is None or not capture.enabled or capture.sampling_percentage <= 0:
        return None
    if not (capture.capture_input or capture.capture_output):
        return None
    bucket, prefix = split_destination(capture.destination)
    return CaptureTarget(
        endpoint=spec.endpoint_name,
        spec=capture,
        bucket=bucket,
        prefix=prefix,
        sampler=Sampler(capture.sampling_percentage),
        capture_input=capture.capture_input,
        capture_output=capture.capture_output,
        csv_types=frozenset(media_type(t) for t in capture.csv_content_types),
        json_types=frozenset(media_type(t) for t in capture.json_content_types),
        roles={v.variant_name: v.execution_role_arn for v in spec.variants},
    )
