"""What the runtime adapter captures for one endpoint: its DataCaptureSpec, made ready for the
hot path and the writer.

Built once per serving revision (`service.DataCapture.serving_changed`), never per invocation:
the sampler, the destination split into bucket and prefix, the content types as sets of media
types, and each variant's model role (records are written as that role, as an asynchronous
answer is: `asyncinf/credentials.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from polyhost.capture.record import media_type
from polyhost.capture.sampler import Sampler
from polyhost.control.seam import DataCaptureSpec, EndpointSpec


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

    def role(self, variant: str) -> str | None:
        return self.roles.get(variant)


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
