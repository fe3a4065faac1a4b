"""The server id: what tells this server's containers apart from any other's, across its restarts.

Random once per state folder and kept there (`server-id`), so a server restarted on the same
state (after a kill -9) finds exactly what its predecessor left, and never what another polyhost
server sharing the machine, the Docker daemon or the Ray cluster started. The Docker backend
labels its containers with it; the Ray backend names its namespace (actors, placement groups)
after it.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

SERVER_ID_FILE = "server-id"
_SERVER_ID = re.compile(r"^[0-9a-f]{16}$")


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
