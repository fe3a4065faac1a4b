"""Opening a container's log file at its start: the one step every backend takes before it
launches anything, with one error for a folder or file it cannot make (a FailureReason names
the container rather than a bare OSError)."""

from __future__ import annotations

from pathlib import Path

from polyhost.backends.base import ContainerStartError, LaunchSpec
from polyhost.logs.files import RotatingLog
from polyhost.settings import Settings


def open_container_log(spec: LaunchSpec, settings: Settings, *folders: Path) -> RotatingLog:
    """The container's rotating log, its folder (and `folders`, e.g. its working folder)
    made first: every backend's start, with one error for a folder or file it cannot make."""
    try:
        for folder in (*folders, spec.log_path.parent):
            folder.mkdir(parents=True, exist_ok=True)
        return RotatingLog(spec.log_path, settings.log_max_bytes, settings.log_backups)
    except OSError as error:
        raise ContainerStartError(
            f"cannot prepare the folders of container {spec.container_id}: "
            f"{error.strerror or error} ({error.filename})"
        ) from None
