"""The labels that mark polyhost's own Docker containers, and the server id they carry.

Every container the Docker backend starts carries `io.polyhost.server=<server id>`, plus the
endpoint, variant, instance, container hostname and container id it runs for. The server id is
random once per state folder and kept there (`server-id`), so a server restarted on the same
state (after a kill -9) recognises, and removes, exactly the containers its predecessor left:
never a container without these labels, nor one of another polyhost server sharing the daemon.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

PREFIX = "io.polyhost."
SERVER = PREFIX + "server"
CONTAINER_ID = PREFIX + "container-id"
ENDPOINT = PREFIX + "endpoint"
VARIANT = PREFIX + "variant"
INSTANCE = PREFIX + "instance"
HOSTNAME = PREFIX + "container-hostname"
SERVER_ID_FILE = "server-id"
_SERVER_ID = re.compile(r"^[0-9a-f]{16}$")
# Docker container names: [a-zA-Z0-9][a-zA-Z0-9_.-]*; long ids are shortened with a hash.
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
MAX_NAME = 200


def server_id(state_dir: Path) -> str:
    """This state folder's server id: read, or made and stored on first use."""
    path = state_dir / SERVER_ID_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
        if _SERVER_ID.match(text):
            return text
    except (OSError, UnicodeDecodeError):
        pass
    made = secrets.token_hex(8)
    state_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{SERVER_ID_FILE}.{os.getpid()}")
    temporary.write_text(made + "\n", encoding="ascii")
    os.replace(temporary, path)
    return made


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
