"""What a group that could not start says: the text that becomes the endpoint's FailureReason.

Every step of a start (model data, placement, launch, health check) fails with one exception,
`DeployFailure`, whose reason is already cut to what SageMaker allows (1024 characters) and
says which container of which production variant failed; a container's failure also quotes the
end of its log, since that is usually where the cause is. `PortTaken` is the one failure worth
starting the container again for (on a fresh port).
"""

from __future__ import annotations

from pathlib import Path

from polyhost.logs.streams import tail

MAX_REASON = 1024


class DeployFailure(Exception):
    """A group could not be started; `reason` is fit for FailureReason (≤ 1024 chars)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason[:MAX_REASON]


class PortTaken(DeployFailure):
    """Another process holds the container's port; starting again on a fresh port may help."""


def failure_with_log(message: str, log_path: Path) -> DeployFailure:
    """`message` plus the end of the container's log, cut to fit FailureReason."""
    room = MAX_REASON - len(message) - len(" Last log lines: ") - 1
    end = tail(log_path, max(room, 0)) if room > 40 else ""
    if end:
        return DeployFailure(f"{message} Last log lines: {end}")
    return DeployFailure(f"{message} The container wrote nothing to its log.")
