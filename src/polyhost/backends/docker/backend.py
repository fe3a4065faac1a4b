"""The Docker backend: every container of an endpoint is a real container of its `Image`.

`polyhost serve --backend docker` talks to the daemon through the Docker SDK (the `docker`
extra). What each container gets is in `run` (command, mounts, network, limits), `env`
(environment) and `images` (which image, pulls, the bind-to-port label); its life after the
start is `container`'s.

Failures at start are what an endpoint's FailureReason quotes, so each says what to do: an
image that is not on the daemon (ImageNotFound), an image without the bind-to-port label, a
daemon that does not answer (ContainerStartError). None of them is a traceback, and a daemon
that is down when the server starts only fails the endpoints that need it.

Orphans: containers carry this state folder's server id (`labels`); at start the
containers a killed predecessor left are stopped and removed (`reap_orphans`), and so is a
container left under the name a new one needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any

from polyhost import framework_images
from polyhost.backends.base import (
    ContainerHandle,
    ContainerStartError,
    InstanceNetwork,
    LaunchSpec,
)
from polyhost.backends.container_log import open_container_log
from polyhost.backends.docker import images as docker_images
from polyhost.backends.docker import labels as docker_labels
from polyhost.backends.docker.container import DockerContainer
from polyhost.backends.docker.daemon import DaemonUnavailable, connect, first_line
from polyhost.backends.docker.env import docker_environment, is_multi_model
from polyhost.backends.docker.log_copy import LogFollower
from polyhost.backends.docker.pod import DockerPod
from polyhost.backends.docker.run import bind_host, create_options, describe_limits
from polyhost.backends.docker.stats import StatsSampler
from polyhost.backends.local_container import LiveContainers
from polyhost.backends.registry import ImageRegistry, RegistryImages
from polyhost.backends.role_credentials import (
    AwsCredentials,
    RoleCredentials,
    RoleCredentialsError,
    load_role_credentials,
)
from polyhost.backends.server_id import server_id
from polyhost.logs.files import RotatingLog
from polyhost.settings import Settings

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

log = logging.getLogger("polyhost.backends.docker")

# Connections to the daemon: the streaming client holds two per container (its wait and its
# log stream) for as long as the container runs.
POOL_SIZE = 64
STREAM_POOL_SIZE = 512


class DockerBackend(RegistryImages):
    """Runs containers on a Docker daemon; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        images: ImageRegistry,
        *,
        role_credentials: RoleCredentials | None = None,
    ) -> None:
        self._settings = settings
        self._images = images
        self._roles = (
            role_credentials
            if role_credentials is not None
            else load_role_credentials(settings.role_credentials)
        )
        self._server = server_id(settings.state_dir)
        self._network = settings.docker_network
        self._pull = settings.docker_pull
        self._live: LiveContainers[DockerContainer] = LiveContainers()
        self._clients: tuple[DockerClient, DockerClient] | None = None
        self._connect_lock = threading.Lock()
        self._reaped = False

    @property
    def server_id(self) -> str:
        return self._server

    # -- images -------------------------------------------------------------------------------
    def knows_image(self, image: str) -> bool:
        """Any well-formed reference: whether the daemon has it is learnt at CreateEndpoint."""
        return docker_images.is_reference(image)

    def serves_multiple_models(self, image: str) -> bool:
        """CreateModel's question for an image no images.toml entry describes (the registry's
        `multi_models` rule): whether its label says it serves many models.

        An image the daemon does not have yet, or a daemon that does not answer, is let
        through: as for the image itself, that is learnt when an endpoint starts, where
        `_launch` checks the label of what it runs."""
        import docker.errors

        try:
            short, _ = self._connected()
        except ContainerStartError:
            return True
        for reference in docker_images.candidates(image):
            try:
                found = short.images.get(reference)
            except docker.errors.ImageNotFound:
                continue
            except docker.errors.DockerException:
                return True
            return docker_images.declares_multi_models(found.labels)
        return True

    def _listed_multi_models(self, image: str, reference: str) -> bool:
        """Whether `reference` (what `image` resolved to) serves many models by the registry,
        whatever its labels: a built-in stack, or an images.toml entry that says so. A
        SageMaker framework URI the daemon has runs as itself (a Deep Learning Container), not
        as the built-in stack its entry describes, so its label decides."""
        entry = self._images.resolve(image)
        if entry is None or not entry.multi_models:
            return False
        return not (
            entry.builtin
            and reference == image
            and framework_images.builtin_image(image) is not None
        )

    # -- the daemon ---------------------------------------------------------------------------
    def _connected(self) -> tuple[DockerClient, DockerClient]:
        """(short calls, streams): connected on first use; ContainerStartError when down."""
        with self._connect_lock:
            if self._clients is None:
                try:
                    short = connect(max_pool_size=POOL_SIZE)
                    streams = connect(timeout_s=None, max_pool_size=STREAM_POOL_SIZE)
                except DaemonUnavailable as error:
                    raise ContainerStartError(str(error)) from None
                self._clients = (short, streams)
            return self._clients

    # -- start ----------------------------------------------------------------------------------
    async def start(self, spec: LaunchSpec) -> ContainerHandle:
        await self._retire(spec.container_id)
        if not self._reaped:
            await self.reap_orphans(self._settings.stop_grace_s)
        credentials = await self._credentials(spec)
        logfile = open_container_log(spec, self._settings)
        try:
            handle = await asyncio.to_thread(self._launch, spec, credentials, logfile)
        except BaseException:
            logfile.close()
            raise
        self._live.add(handle)
        log.info(
            "started container %s (image %s, docker %s, port %d); limits: %s",
            spec.container_id,
            spec.image,
            handle.docker_id[:12],
            spec.port,
            handle.limits_applied,
        )
        return handle

    def _launch(
        self, spec: LaunchSpec, credentials: AwsCredentials | None, logfile: RotatingLog
    ) -> DockerContainer:
        """Resolve the image, create and start the container, attach its threads."""
        import docker.errors

        short, streams = self._connected()
        try:
            reference, image = docker_images.resolve(short, spec.image, self._pull)
        except docker.errors.DockerException as error:
            raise ContainerStartError(f"the Docker daemon failed: {first_line(error)}") from None
        docker_images.require_bind_to_port(spec.image, image.labels)
        if is_multi_model(spec) and not self._listed_multi_models(spec.image, reference):
            docker_images.require_multi_models(spec.image, image.labels)
        name = docker_labels.container_name(self._server, spec.container_id)
        self._remove_stale(short, name)
        pod = None
        if spec.network is not None:
            if not isinstance(spec.network, DockerPod):
                raise ContainerStartError(f"{spec.network.description} is not a Docker pod")
            pod = spec.network.ensure(short, reference)
        image_user = str(((image.attrs or {}).get("Config") or {}).get("User") or "")
        options = create_options(
            spec,
            image=reference,
            name=name,
            labels=docker_labels.labels(self._server, spec.container_id),
            environment=docker_environment(
                spec,
                region=self._settings.region,
                bind_host=bind_host(self._network),
                credentials=credentials,
            ),
            network=self._network,
            image_user=image_user,
            pod=pod,
        )
        container: Container | None = None
        try:
            container = short.containers.create(**options)
            container.start()
            container.reload()
        except docker.errors.DockerException as error:
            if container is not None:
                with contextlib.suppress(docker.errors.DockerException):
                    container.remove(force=True)
            raise ContainerStartError(
                f"Docker could not start image {spec.image}: {first_line(error)}"
            ) from None
        attrs: dict[str, Any] = container.attrs
        pid = int((attrs.get("State") or {}).get("Pid") or 0)
        watcher = streams.containers.prepare_model(attrs)
        chunks = watcher.logs(stream=True, follow=True, stdout=True, stderr=True)
        follower = LogFollower(
            chunks,
            logfile,
            spec.container_id,
            cancel=getattr(chunks, "close", None),
            epilogue=lambda: self._ending(short, str(container.id) if container else ""),
        )
        follower.start()
        sampler = StatsSampler(lambda: _one_stats(short, str(attrs["Id"])), spec.container_id)
        sampler.start()
        return DockerContainer(
            spec,
            container,
            watcher,
            follower,
            sampler,
            describe_limits(spec, attrs.get("HostConfig") or {}),
            pid=pid,
            published=bool(self._network),
            on_stopped=self._live.forget,
        )

    @staticmethod
    def _ending(client: DockerClient, docker_id: str) -> str | None:
        """A last log line when Docker knows why the container ended (out of memory)."""
        state = client.api.inspect_container(docker_id).get("State") or {}
        if state.get("OOMKilled"):
            return (
                "the container was killed: it went over its memory limit "
                "(raise `memory` for its image in images.toml, or use less)"
            )
        return None

    def _remove_stale(self, client: DockerClient, name: str) -> None:
        """A container of ours left under `name` (a stop that could not remove it) goes."""
        import docker.errors

        try:
            stale = client.containers.get(name)
        except docker.errors.NotFound:
            return
        except docker.errors.DockerException as error:
            raise ContainerStartError(f"the Docker daemon failed: {first_line(error)}") from None
        if (stale.labels or {}).get(docker_labels.SERVER) != self._server:
            raise ContainerStartError(
                f"a container named {name} exists on the Docker daemon and is not this "
                "server's; remove or rename it"
            )
        log.warning("removing container %s left from an earlier start", name)
        with contextlib.suppress(docker.errors.NotFound):
            stale.remove(force=True)

    async def open_network(self, instance_key: str) -> InstanceNetwork:
        """The instance's pause container (`NetworkIsolator`; `pod.py`), started with the
        instance's first container."""
        return DockerPod(self._server, instance_key)

    async def _credentials(self, spec: LaunchSpec) -> AwsCredentials | None:
        role = spec.execution_role_arn
        if not self._roles.knows(role):
            return None
        try:
            return await asyncio.to_thread(self._roles.resolve, role)
        except RoleCredentialsError as error:
            raise ContainerStartError(str(error)) from None

    async def _retire(self, container_id: str) -> None:
        """Before a container starts again (a restart), remove what is left of its last run."""
        previous = self._live.previous(container_id)
        if previous is not None:
            await previous.retire(self._settings.stop_grace_s)

    # -- orphans --------------------------------------------------------------------------------
    async def reap_orphans(self, grace_s: float) -> list[str]:
        """Stop and remove this server id's containers that this run did not start.

        A daemon that does not answer is not fatal here: the server starts, its endpoints
        fail with the daemon's reason, and the reaping happens at the first start that
        reaches the daemon.
        """
        try:
            short, _ = await asyncio.to_thread(self._connected)
        except ContainerStartError as error:
            log.warning("cannot look for containers left by a previous run: %s", error)
            return []
        self._reaped = True
        import docker.errors

        try:
            found = await asyncio.to_thread(
                short.containers.list, all=True, filters=docker_labels.server_filter(self._server)
            )
        except docker.errors.DockerException as error:
            log.warning("cannot list containers left by a previous run: %s", first_line(error))
            return []
        live = {h.docker_id for h in self._live}
        orphans = [c for c in found if c.id not in live]
        if not orphans:
            return []
        await asyncio.gather(*(asyncio.to_thread(_remove, c, grace_s) for c in orphans))
        names = [str((c.labels or {}).get(docker_labels.CONTAINER_ID, c.name)) for c in orphans]
        log.warning("removed %d container(s) left by a previous run: %s", len(names), names)
        return names


def _one_stats(client: DockerClient, docker_id: str) -> dict[str, Any]:
    """One reading of a container's stats, without Docker's wait for a second one."""
    try:
        answer = client.api.stats(docker_id, stream=False, one_shot=True)
    except Exception as error:  # an API older than 1.41 has no one-shot
        if "one_shot" not in str(error):
            raise
        answer = client.api.stats(docker_id, stream=False)
    return dict(answer)


def _remove(container: Container, grace_s: float) -> None:
    import docker.errors

    try:
        if container.status == "running":
            container.stop(timeout=max(int(grace_s), 0))
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.DockerException as error:
        log.warning("removing container %s: %s", container.name, first_line(error))
