"""The two local services the demo runs: an S3-compatible store (moto) and the polyhost server.

Both are child processes on loopback ports, in their own process groups so that Ctrl-C reaches
the demo first and the demo stops them in order: polyhost (which stops its containers), then
S3. Their output goes to log files under the work folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

S3_REGION = "us-east-1"
# moto accepts any keys; these exist so that neither the demo nor the server looks for real ones.
S3_ACCESS_KEY = "polyhost-demo"
S3_SECRET_KEY = "polyhost-demo-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:`port` (a port someone holds cannot be bound)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def status_of(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status `url` answers with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return None


def answers(url: str, timeout: float = 1.0) -> bool:
    """True when `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return int(answer.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class ChildService:
    """A service in a child process, started by `start()` and stopped by `stop()`."""

    name: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def _launch(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )

    def _wait_until(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited; its log is {self.log_path}:\n{self.tail()}"
                )
            if answers(url):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer {url} in {timeout:.0f} s ({self.log_path})")

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def stop(self, grace: float = 45.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class LocalS3(ChildService):
    """moto's server mode: an in-memory S3 at http://127.0.0.1:PORT."""

    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LocalS3:
        self.port = self.port or free_port()
        self._launch([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)])
        self._wait_until(self.url + "/moto-api/", timeout)
        return self

    def env(self) -> dict[str, str]:
        """What points boto3 — ours and the server's — at this S3 (standard AWS variables)."""
        return {
            "AWS_ENDPOINT_URL_S3": self.url,
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_DEFAULT_REGION": S3_REGION,
        }

    def role_credentials(self, role_arn: str, folder: Path) -> Path:
        """A roles.toml giving the model's execution role this S3's keys: on SageMaker the
        role grants a container its S3 access; here `--role-credentials` does (a container
        never gets the server's own keys)."""
        folder.mkdir(parents=True, exist_ok=True)
        keys = folder / "model-role.ini"
        keys.write_text(
            f"aws_access_key_id = {S3_ACCESS_KEY}\naws_secret_access_key = {S3_SECRET_KEY}\n",
            encoding="utf-8",
        )
        roles = folder / "roles.toml"
        roles.write_text(
            f'[roles."{role_arn}"]\ncredentials_file = "{keys.name}"\n', encoding="utf-8"
        )
        return roles

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=S3_REGION,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
        )

    def upload(self, path: Path, bucket: str, key: str) -> str:
        """Put a file at s3://bucket/key (creating the bucket) and return that URL."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
        client.upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{key}"


@dataclass
class PolyhostServer(ChildService):
    """`python -m polyhost serve` on 127.0.0.1:PORT with its state in `state_dir`."""

    port: int = 7080
    state_dir: Path = Path("state")
    env: dict[str, str] = field(default_factory=dict)
    role_credentials: Path | None = None
    # The admin listener (/metrics, the dashboard at /ui/): the port after the main one when it
    # is free (7081 beside the default 7080, as `polyhost serve` itself picks), else any free
    # one, so a demo on another --port does not collide with a server already on 7081.
    admin_port: int = 7081

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def already_running(self) -> bool:
        return answers(self.url + "/ping")

    def start(self, timeout: float = 60.0) -> PolyhostServer:
        command = [
            sys.executable, "-m", "polyhost", "serve",
            "--port", str(self.port),
            "--state-dir", str(self.state_dir),
            "--stop-grace", "10",
        ]  # fmt: skip
        self.admin_port = self.port + 1 if port_is_free(self.port + 1) else free_port()
        command += ["--admin-port", str(self.admin_port)]
        if self.role_credentials is not None:
            command += ["--role-credentials", str(self.role_credentials)]
        self._launch(command, self.env)
        self._wait_until(self.url + "/ping", timeout)
        return self
