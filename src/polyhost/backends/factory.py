"""The backend `--backend` names, built from the settings: the server's one place that knows.

The deployer and the router only see `Backend`; adding a backend is adding a branch here.
"""

from __future__ import annotations

from polyhost.backends.base import Backend
from polyhost.backends.registry import ImageRegistry
from polyhost.settings import Settings


class BackendUnavailable(Exception):
    """The chosen backend cannot run here; the message says what to install or start."""


def make_backend(settings: Settings, images: ImageRegistry) -> Backend:
    if settings.backend == "process":
        from polyhost.backends.process.backend import ProcessBackend

        return ProcessBackend(settings, images)
    if settings.backend == "docker":
        return _docker(settings, images)
    if settings.backend == "ray":
        return _ray(settings, images)
    raise BackendUnavailable(
        f"--backend {settings.backend} is not available in this build of polyhost; "
        "use --backend process or --backend docker."
    )


def _docker(settings: Settings, images: ImageRegistry) -> Backend:
    """The Docker backend. The daemon need not answer yet (its endpoints fail until it does);
    the SDK must be installed. CreateModel then takes any image reference, as SageMaker
    does: whether the image exists is learnt when an endpoint starts. Mode MultiModel takes an
    image whose label says it serves many models (`docker.images`)."""
    try:
        import docker  # noqa: F401
    except ImportError:
        raise BackendUnavailable(
            "--backend docker needs the Docker SDK for Python: pip install 'polyhost[docker]'"
        ) from None
    from polyhost.backends.docker.backend import DockerBackend
    from polyhost.backends.docker.images import is_reference

    backend = DockerBackend(settings, images)
    images.admit(is_reference, multi_models=backend.serves_multiple_models)
    return backend


def _ray(settings: Settings, images: ImageRegistry) -> Backend:
    """The Ray backend, connected to its cluster: Ray must be installed and the cluster reachable
    (the message names the address tried)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise BackendUnavailable(
            "--backend ray needs Ray on the server and on every node: pip install 'polyhost[ray]'"
        ) from None
    from polyhost.backends.ray.backend import RayBackend, ray_address

    if settings.ray_container_cpus < 0 or settings.ray_container_memory < 0:
        raise BackendUnavailable(
            "--ray-container-cpus and --ray-container-memory must be 0 or more, not "
            f"{settings.ray_container_cpus:g} and {settings.ray_container_memory}"
        )
    if settings.ray_placement_timeout_s <= 0:
        raise BackendUnavailable(
            f"--ray-placement-timeout must be more than 0, not {settings.ray_placement_timeout_s:g}"
        )
    try:
        return RayBackend(settings, images)
    except (ConnectionError, RuntimeError, ValueError) as error:
        lines = str(error).strip().splitlines()
        raise BackendUnavailable(
            f"--backend ray cannot reach the Ray cluster at {ray_address(settings)} "
            f"(--ray-address or RAY_ADDRESS): {lines[0] if lines else type(error).__name__}"
        ) from None
