"""The labels that mark polyhost's own Docker containers, and the server id they carry.

Every container the Docker backend starts carries `io.polyhost.server=<server id>`, plus the
endpoint, variant, instance, container hostname and container id it runs for. The server id is
the state folder's (`backends/server_id.py`), so a server restarted on the same state (after a
kill -9) recognises, and removes, exactly the containers its predecessor left: never a
container without these labels, nor one of another polyhost server sharing the daemon.
"""

from __future__ import annotations

import hashlib
import re

PREFIX = "io.polyhost."
SERVER = PREFIX + "server"
CONTAINER_ID = PREFIX + "container-id"
ENDPOINT = PREFIX + "endpoint"
VARIANT = PREFIX + "variant"
INSTANCE = PREFIX + "instance"
HOSTNAME = PREFIX + "container-hostname"
# Docker container names: [a-zA-Z0-9][a-zA-Z0-9_.-]*; long ids are shortened with a hash.
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
MAX_NAME = 200


def labels(server: str, container_id: str) -> dict[str, str]:
    """The labels of one container. The deployer's ids are
    `endpoint.rREVISION.variant.instance.hostname` (names cannot hold dots); another shape
    still gets the server and container-id labels."""
    found = {SERVER: server, CONTAINER_ID: container_id}
    parts = container_id.split(".")
    if len(parts) == 5:
        endpoint, _revision, variant, instance, hostname = parts
        found |= {ENDPOINT: endpoint, VARIANT: variant, INSTANCE: instance, HOSTNAME: hostname}
    return found


def container_name(server: str, container_id: str) -> str:
    """A Docker name unique per server and container id: `polyhost-<server>-<id>`."""
    name = f"polyhost-{server}-{_NAME_UNSAFE.sub('_', container_id)}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(container_id.encode()).hexdigest()[:16]
    return f"{name[: MAX_NAME - 17]}-{digest}"


def server_filter(server: str) -> dict[str, str | list[str] | bool]:
    """The `filters` argument that lists only this server's containers."""
    return {"label": [f"{SERVER}={server}"]}
