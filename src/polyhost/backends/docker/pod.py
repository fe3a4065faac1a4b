"""An isolated instance's network on Docker: a pause container the instance's containers join.

Docker cannot start a container in a namespace the server made, but it can start one in
another container's (`network_mode=container:<id>`). So each isolated instance gets a pause
container, on no network at all (`network_mode=none`: only its own loopback), running `sleep
infinity` from the image of the instance's first container (so no other image need be on the
daemon); the instance's containers join its namespace and reach each other on loopback, as on
one SageMaker instance. The server reaches them through the same namespace, entered by the
pause container's pid (`netns.NetworkNamespace.of_process`), exactly as for the process
backend.

The pause container carries the server's labels, so a killed server's pods are reaped with its
containers; it runs as nobody, with no new privileges, and does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

from polyhost.backends.base import ContainerStartError
from polyhost.backends.docker import labels as docker_labels
from polyhost.backends.docker.daemon import first_line
from polyhost.backends.netns import NetworkNamespace

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

log = logging.getLogger("polyhost.backends.docker")

PAUSE_COMMAND = ["sleep", "infinity"]
NOBODY = "65534:65534"


class DockerPod:
    """One instance's network: made with its first container (`ensure`), gone with `close`."""

    def __init__(self, server: str, instance_key: str) -> None:
        self.description = f"the network of instance {instance_key}"
        self._server = server
        self._key = instance_key
        self._lock = threading.Lock()
        self._container: Container | None = None
        self._namespace: NetworkNamespace | None = None

    @property
    def container_id(self) -> str:
        return f"{self._key}.pod"

    def ensure(self, client: DockerClient, image: str) -> str:
        """The pause container's id, started now from `image` if it is not yet; raises
        ContainerStartError."""
        import docker.errors

        with self._lock:
            if self._container is not None:
                return str(self._container.id)
            name = docker_labels.container_name(self._server, self.container_id)
            with contextlib.suppress(docker.errors.NotFound):
                client.containers.get(name).remove(force=True)  # left by an earlier start
            options: dict[str, Any] = {
                "image": image,
                "entrypoint": list(PAUSE_COMMAND),
                "command": [],
                "name": name,
                "labels": docker_labels.labels(self._server, self.container_id),
                "detach": True,
                "network_mode": "none",
                "user": NOBODY,
                "security_opt": ["no-new-privileges"],
                "log_config": {"type": "none"},
            }
            container: Container | None = None
            try:
                container = client.containers.create(**options)
                container.start()
                container.reload()
                pid = int((container.attrs.get("State") or {}).get("Pid") or 0)
                if pid <= 0:
                    raise ContainerStartError("it stopped at once (does the image have sleep?)")
                self._namespace = NetworkNamespace.of_process(pid, self.description)
            except (docker.errors.DockerException, OSError, ContainerStartError) as error:
                if container is not None:
                    with contextlib.suppress(docker.errors.DockerException):
                        container.remove(force=True)
                raise ContainerStartError(
                    f"Docker could not start the pause container of instance {self._key} "
                    f"(`{' '.join(PAUSE_COMMAND)}` in image {image}): {first_line(error)}"
                ) from None
            self._container = container
            return str(container.id)

    async def connect(self, host: str, port: int) -> socket.socket:
        namespace = self._namespace
        if namespace is None:
            raise ConnectionRefusedError(f"{self.description} has no container yet")
        return await namespace.connect(host, port)

    async def close(self) -> None:
        with self._lock:
            container, self._container = self._container, None
            namespace, self._namespace = self._namespace, None
        if namespace is not None:
            namespace.close_now()
        if container is not None:
            await asyncio.to_thread(_remove, container)


def _remove(container: Container) -> None:
    import docker.errors

    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.DockerException as error:
        log.warning("removing pause container %s: %s", container.name, first_line(error))
