"""Start a real `polyhost serve` in a subprocess on a free loopback port, and clients for it."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

CONTAINERS = Path(__file__).parent / "containers"
ECHO_IMAGE = "polyhost-test/echo:1"
FAULTY_IMAGE = "polyhost-test/faulty:1"  # containers/faulty.py: misbehaves as FAULT=... says
BUSY_IMAGE = "polyhost-test/busy:1"  # containers/busy.py: burns CPU, holds memory on request
STREAM_IMAGE = "polyhost-test/streamer:1"  # containers/streamer.py: answers in chunks
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


def default_sigint() -> None:
    """Preexec for a child the test interrupts: SIGINT back to its default. A suite started
    where SIGINT is ignored (a background job, `nohup ... &`, `trap '' INT`) passes SIG_IGN on
    to its children, and Python keeps an inherited SIG_IGN, so the child would never see
    KeyboardInterrupt. (`polyhost serve` sets its own handlers and needs none of this.)"""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def write_image_config(path: Path, busy: bool = False) -> Path:
    """images.toml registering the test containers under their test image names (with `busy`,
    the busy container too)."""
    images = {
        ECHO_IMAGE: "echo_server.py",
        FAULTY_IMAGE: "faulty.py",
        STREAM_IMAGE: "streamer.py",
    }
    if busy:
        images[BUSY_IMAGE] = "busy.py"
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

    def restart(self, timeout: float = 20.0) -> PolyhostProcess:
        """Start again on the same ports. After a kill -9 they are free for anyone: an
        outgoing connection of another test can take one as its local port for a moment,
        which refuses the bind (EADDRINUSE) until it closes. So a refused bind is tried again
        for up to `timeout` seconds; clients made before the restart keep working."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.start()
            except RuntimeError as error:
                if "address already in use" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.25)

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

    def autoscaling(self) -> Any:
        """A boto3 Application Auto Scaling client (AWS JSON 1.1, `AnyScaleFrontendService`)."""
        return boto3.client(
            "application-autoscaling",
            endpoint_url=self.url,
            region_name=REGION,
            config=Config(retries={"max_attempts": 1}),
        )

    def cloudwatch(self, protocol: str | None = None, models: Path | None = None) -> Any:
        """A boto3 CloudWatch client; with `protocol`, one made to speak only that protocol
        (botocore's own serializer and parser for it, from a copy of its model in `models`)."""
        config = Config(retries={"max_attempts": 1})
        if protocol is None:
            return boto3.client(
                "cloudwatch", endpoint_url=self.url, region_name=REGION, config=config
            )
        assert models is not None
        session = botocore.session.get_session()
        model = copy.deepcopy(session.get_service_data("cloudwatch"))
        model["metadata"]["protocol"] = protocol
        model["metadata"]["protocols"] = [protocol]
        folder = models / protocol
        version_dir = folder / "cloudwatch" / model["metadata"]["apiVersion"]
        version_dir.mkdir(parents=True, exist_ok=True)
        (version_dir / "service-2.json").write_text(json.dumps(model), encoding="utf-8")
        own = botocore.session.get_session()
        own.get_component("data_loader").search_paths.insert(0, str(folder))
        client = boto3.Session(botocore_session=own).client(
            "cloudwatch", endpoint_url=self.url, region_name=REGION, config=config
        )
        assert client.meta.service_model.resolved_protocol == protocol
        return client


class ServerFactory:
    """Starts polyhost servers, each in a folder of its own, and stops every one it started.

    `start_server(*extra_args, name=..., images=True, busy=False, env=None)`: the test images
    registered unless `images=False` (with `busy`, the busy container too; `images` may also be
    a function that writes an images.toml of its own to the path it is given), `extra_args`
    passed to `polyhost serve` as they are, `env` on top of the test's environment.
    """

    def __init__(self, folder: Callable[[str], Path]) -> None:
        self._folder = folder
        self.started: list[PolyhostProcess] = []

    def __call__(
        self,
        *extra_args: str,
        name: str = "polyhost",
        images: bool | Callable[[Path], Path] = True,
        busy: bool = False,
        env: dict[str, str] | None = None,
    ) -> PolyhostProcess:
        base = self._folder(name)
        image_config = None
        if callable(images):
            image_config = images(base / "images.toml")
        elif images:
            image_config = write_image_config(base / "images.toml", busy=busy)
        proc = PolyhostProcess(
            state_dir=base / "state",
            image_config=image_config,
            extra_args=list(extra_args),
            env=dict(env or {}),
        )
        self.started.append(proc)  # before start: one that hangs at start is stopped too
        return proc.start()

    def stop_all(self) -> None:
        failures: list[BaseException] = []
        for proc in reversed(self.started):
            if proc.process is None or proc.process.poll() is not None:
                continue
            try:
                proc.stop()
            except Exception as error:  # stop the others, then report the first failure
                proc.process.kill()
                proc.process.wait()
                failures.append(error)
        self.started.clear()
        if failures:
            raise failures[0]
