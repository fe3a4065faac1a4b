"""Container log files: where they live, how a stream is named, and reading their tail."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LogStream:
    """One container's log, named as SageMaker names its CloudWatch stream."""

    endpoint_name: str
    variant_name: str
    instance_id: str
    hostname: str
    path: Path

    @property
    def name(self) -> str:
        return f"{self.variant_name}/{self.instance_id}/{self.hostname}"

    @property
    def group(self) -> str:
        return f"/aws/sagemaker/Endpoints/{self.endpoint_name}"


def tail(path: Path, max_chars: int = 600) -> str:
    """The end of a log file as text, for FailureReason messages; empty when unreadable."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_chars * 4))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    text = text.strip()
    if len(text) > max_chars:
        text = "…" + text[-max_chars:]
    return text
