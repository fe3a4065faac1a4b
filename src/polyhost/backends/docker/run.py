"""How one container is created: the Docker API's arguments for a `LaunchSpec`.

- Command `serve`, as SageMaker starts a serving container (`docker run IMAGE serve`).
- The model folder, extracted on the host, is bind-mounted read-only at /opt/ml/model; a
  multi-model container's (empty at start: the server puts each model there before asking the
  container to load it) at /opt/ml/models, the folder SageMaker's multi-model contract names.
- Network: by default the host's (`network_mode=host`): the containers of an instance share
  one network as a SageMaker instance's containers do, each on its own loopback port, and the
  router reaches them at 127.0.0.1:port with nothing in between. The built-in stacks bind
  127.0.0.1; an image that binds 0.0.0.0 is then reachable on the machine's other addresses
  too (firewall them, or use a network). With `--docker-network NAME` a container runs on
  that user network instead and its port is published on 127.0.0.1 only (the stack binds
  0.0.0.0 inside the container's own network namespace); SAGEMAKER_SAFE_PORT_RANGE is then
  not published.
- Isolated (`confinement.py`): the instance's pause container's network
  (`network_mode=container:<id>`, `pod.py`): the instance's containers share a loopback and
  nothing else, and only the server reaches them.
- User: the image's USER; an image that names none (root, by Docker's default) runs as nobody
  (65534:65534), so a container is never root by accident. The built-in images name one.
- Limits: memory (no swap beyond it) and CPUs from images.toml, per image. No limit when the
  image has none, as with the process backend: a guessed share could kill a model that needs
  more, and Docker's default (none) is what a user of `docker run` expects.
- Docker's own copy of the output (json-file, which the logs API reads) is bounded too.
"""

from __future__ import annotations

from typing import Any

from polyhost import framework_images
from polyhost.backends.base import LaunchSpec
from polyhost.backends.cgroups import format_bytes
from polyhost.backends.docker.env import container_model_dir
from polyhost.backends.registry import SAGEMAKER_IMAGE_FLAG

COMMAND = ["serve"]
# Docker keeps each container's output for its logs API; polyhost's own copy is the rotating
# log file (LaunchSpec.log_path). Bound Docker's so a chatty container cannot fill its disk.
DOCKER_LOG = {"type": "json-file", "config": {"max-size": "10m", "max-file": "2"}}
LOOPBACK = "127.0.0.1"
NOBODY = "65534:65534"


def bind_host(network: str) -> str:
    """The address a built-in stack binds inside the container."""
    return "0.0.0.0" if network else LOOPBACK


def create_options(
    spec: LaunchSpec,
    *,
    image: str,
    name: str,
    labels: dict[str, str],
    environment: dict[str, str],
    network: str,
    image_user: str = "",
    pod: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments of `client.containers.create` for `spec`; `image_user` is the image's
    USER (empty: none), `pod` the pause container whose network it joins (isolated).

    When a built-in image stands in for the SageMaker framework image the model names, the
    stack is told that image (`--sagemaker-image`), so its log says which version serves it."""
    command = list(COMMAND)
    if image != spec.image and framework_images.builtin_image(spec.image) is not None:
        command += [SAGEMAKER_IMAGE_FLAG, spec.image]
    options: dict[str, Any] = {
        "image": image,
        "command": command,
        "name": name,
        "labels": labels,
        "environment": environment,
        "detach": True,
        "log_config": DOCKER_LOG,
        "security_opt": ["no-new-privileges"],
    }
    if spec.model_dir is not None:
        options["volumes"] = {
            str(spec.model_dir): {"bind": container_model_dir(spec), "mode": "ro"}
        }
    if not image_user:
        options["user"] = NOBODY
    if pod is not None:
        options["network_mode"] = f"container:{pod}"
    elif network:
        options["network"] = network
        options["ports"] = {f"{spec.port}/tcp": (LOOPBACK, spec.port)}
    else:
        options["network_mode"] = "host"
    limits = spec.limits
    if limits.memory_bytes is not None:
        options["mem_limit"] = limits.memory_bytes
        options["memswap_limit"] = limits.memory_bytes  # no swap past the limit
    if limits.cpus is not None:
        options["nano_cpus"] = round(limits.cpus * 1e9)
    return options


def describe_limits(spec: LaunchSpec, host_config: dict[str, Any]) -> str:
    """What Docker applied, read back from the container's HostConfig."""
    limits = spec.limits
    if limits.memory_bytes is None and limits.cpus is None:
        return "no limits requested"
    parts: list[str] = []
    memory = int(host_config.get("Memory") or 0)
    if limits.memory_bytes is not None:
        parts.append(
            f"memory: {format_bytes(memory)} (Docker cgroup)"
            if memory
            else "memory: not applied by Docker"
        )
    nano = int(host_config.get("NanoCpus") or 0)
    if limits.cpus is not None:
        parts.append(f"cpus: {nano / 1e9:g} (Docker cgroup)" if nano else "cpus: not applied")
    return "; ".join(parts)
