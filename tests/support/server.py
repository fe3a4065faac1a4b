"""Start a real `polyhost serve` in a subprocess on a free loopback port, and clients for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

CONTAINERS = Path(__file__).parent / "containers"
ECHO_IMAGE = "polyhost-test/echo:1"
FAULTY_IMAGE = "polyhost-test/faulty:1"  # containers/faulty.py: misbehaves as FAULT=... says
REGION = "us-east-1"
ACCOUNT = "123456789012"

# Dummy credentials: polyhost does not need them, botocore insists on signing.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
# A server a test starts by hand (`python -m polyhost serve ...`) gets no admin listener unless
# it asks: the default port (7081) would collide between servers run at once. PolyhostProcess
# passes --admin-port, which beats this.
os.environ.setdefault("POLYHOST_ADMIN_PORT", "0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_image_config(path: Path) -> Path:
    """images.toml registering the test containers under their test image names."""
    images = {ECHO_IMAGE: "echo_server.py", FAULTY_IMAGE: "faulty.py"}
    path.write_text(
        "".join(
            f'[images."{image}"]\ncommand = ["{sys.executable}", "{CONTAINERS / program}"]\n'
            for image, program in images.items()
        ),
        encoding="utf-8",
    )
    return path


@dataclass
class PolyhostProcess:
    state_dir: Path
    image_config: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    # The admin listener (/metrics, /api): a free port of its own unless the test passes
    # --admin-port itself, since the default (7081) would collide between servers run at once.
    admin_port: int = 0

    def __post_init__(self) -> None:
        if "--admin-port" in self.extra_args:
            self.admin_port = int(self.extra_args[self.extra_args.index("--admin-port") + 1])
        else:
            self.admin_port = self.admin_port or free_port()
            self.extra_args = [*self.extra_args, "--admin-port", str(self.admin_port)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def start(self, timeout: float = 30.0) -> PolyhostProcess:
        self.port = self.port or free_port()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.state_dir / f"server-{int(time.time() * 1000)}.log"
        args = [
            sys.executable, "-m", "polyhost", "serve",
            "--port", str(self.port),
            "--state-dir", str(self.state_dir),
            "--stop-grace", "3",
        ]  # fmt: skip
        if self.image_config is not None:
            args += ["--image-config", str(self.image_config)]
        args += self.extra_args
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"polyhost exited at start:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=1) as answer:
                    if answer.status == 200:
                        return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"polyhost did not come up in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        return code

    def kill9(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> PolyhostProcess:
        return self.start()

    def sagemaker(self) -> Any:
        return boto3.client(
            "sagemaker",
            endpoint_url=self.url,
            region_name=REGION,
            config=Config(retries={"max_attempts": 1}),
        )

    def runtime(self) -> Any:
        return boto3.client(
            "sagemaker-runtime",
            endpoint_url=self.url,
            region_name=REGION,
            config=Config(retries={"max_attempts": 1}, read_timeout=120),
        )
