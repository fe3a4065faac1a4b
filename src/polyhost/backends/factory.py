"""The backend `--backend` names, built from the settings: the server's one place that knows.

The deployer and the router only see `Backend`; adding a backend is adding a branch here.
"""

from __future__ import annotations

from polyhost.backends.base import Backend
from polyhost.backends.images import ImageRegistry
from polyhost.settings import Settings


class BackendUnavailable(Exception):
    """The chosen backend cannot run here; the message says what to install or start."""


def make_backend(settings: Settings, images: ImageRegistry) -> Backend:
    if settings.backend == "process":
        from polyhost.backends.process import ProcessBackend

        return ProcessBackend(settings, images)
    raise BackendUnavailable(
        f"--backend {settings.backend} is not available in this build of polyhost; "
        "use --backend process."
    )
