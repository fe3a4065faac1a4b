"""Server settings: one typed object built from CLI flags (and `POLYHOST_*` env defaults).

Every component takes what it needs from here instead of reading the environment itself, so a
test can start a server with exactly the settings it means.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    return os.environ.get(f"POLYHOST_{name}", default)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 7080
    state_dir: Path = field(default_factory=lambda: Path(_env("STATE_DIR", "./state")))
    region: str = "us-east-1"
    account_id: str = "123456789012"
    image_config: Path | None = None
    insecure: bool = False
    # Data plane limits (CONTRACT.md): per-request container timeout and per-container bound on
    # requests in flight; past the bound a request is refused at once rather than queued.
    invocation_timeout_s: float = 60.0
    max_inflight_per_container: int = 64
    max_body_bytes: int = 6 * 1024 * 1024
    max_interchange_bytes: int = 5 * 1024 * 1024
    # Artifacts: extracted size cap protects the disk against a tar bomb.
    max_model_bytes: int = 20 * 1024 * 1024 * 1024
    # Process backend: seconds between SIGTERM and SIGKILL when a container is stopped.
    stop_grace_s: float = 30.0
    # Seconds a container may take to pass /ping when its variant does not say
    # (ContainerStartupHealthCheckTimeoutInSeconds); SageMaker's default is 240.
    default_startup_timeout_s: float = 240.0
    access_log: bool = True
    # Seconds an idle keep-alive client connection is kept open.
    keep_alive_timeout_s: float = 75.0

    @property
    def is_loopback(self) -> bool:
        """True when the bind address only accepts connections from this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def db_path(self) -> Path:
        return self.state_dir / "polyhost.db"

    @property
    def containers_dir(self) -> Path:
        """Per-container working folders: extracted models and logs."""
        return self.state_dir / "containers"

    @property
    def artifact_cache_dir(self) -> Path:
        return self.state_dir / "artifacts"

    def arn(self, kind: str, name: str) -> str:
        """SageMaker ARN of a resource; the name part is lowercased as SageMaker does."""
        return f"arn:aws:sagemaker:{self.region}:{self.account_id}:{kind}/{name.lower()}"
