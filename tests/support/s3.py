"""A real S3-compatible server for tests: moto's server mode in a subprocess on loopback.

Tests point polyhost (in-process, or a `polyhost serve` subprocess through `env()`) at it with
the standard `AWS_ENDPOINT_URL_S3` setting, exactly as a user would point it at MinIO.
The server's access log is kept, so a test can count the requests it really received.

Use the `s3_server` fixture (session-scoped): `from tests.support.s3 import s3_server`.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support.server import free_port

ACCESS_KEY = "testing"
SECRET_KEY = "testing-secret"
REGION = "us-east-1"


class MotoS3:
    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> MotoS3:
        self.port = free_port()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto server exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"moto server did not come up in {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def env(self) -> dict[str, str]:
        """Environment that points boto3 (and a polyhost server) at this S3."""
        return {
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def role_credentials(self, role_arn: str, folder: Path) -> Path:
        """A roles.toml giving `role_arn` this S3's keys, for `--role-credentials`: containers
        get their model role's credentials, never the server's."""
        folder.mkdir(parents=True, exist_ok=True)
        keys = folder / "model-role.ini"
        keys.write_text(
            f"aws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n",
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
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def new_bucket(self, prefix: str = "models") -> str:
        """A fresh bucket, so tests sharing the server never see each other's objects."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=data)

    def count_requests(self, method: str, path: str) -> int:
        """How many `METHOD /path` requests the server logged (its werkzeug access log)."""
        needle = f'"{method} {path} HTTP/'
        return sum(1 for line in self.log().splitlines() if needle in line)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    server = MotoS3(tmp_path_factory.mktemp("moto") / "moto.log").start()
    yield server
    server.stop()
