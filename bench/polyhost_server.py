"""A real `polyhost serve` for a benchmark, and the boto3 calls that deploy endpoints on it.

Endpoints are created exactly as a user would (boto3's `sagemaker` client with `endpoint_url`,
dummy credentials) and invoked on `POST /endpoints/{name}/invocations`. The cold-start time of
an endpoint is measured from the CreateEndpoint call to the first DescribeEndpoint that reports
InService, polling every 10 ms.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psutil
from botocore.config import Config

from bench.procs import Service, StartFailed, free_port, pinned

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/polyhost-bench"
ECHO_IMAGE = "bench/echo"
ECHO_PROGRAM = Path(__file__).parent / "containers" / "echo.py"
ECHO_ASGI_IMAGE = "bench/echo-asgi"
ECHO_ASGI_PROGRAM = Path(__file__).parent / "containers" / "echo_asgi.py"
STALL_IMAGE = "bench/stall"
STALL_PROGRAM = Path(__file__).parent / "containers" / "stall.py"
STREAM_IMAGE = "bench/stream"
STREAM_PROGRAM = Path(__file__).parent / "containers" / "stream.py"
HOSTNAME_HEADER = "X-Amzn-SageMaker-Target-Container-Hostname"

# polyhost needs no credentials; botocore insists on signing with some.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", REGION)


def write_image_config(path: Path, extra: dict[str, str] | None = None) -> Path:
    """images.toml with the light echo containers as `bench/echo` (asyncio protocol) and
    `bench/echo-asgi` (uvicorn), the never-answering `bench/stall`, and `extra` python
    overrides of built-in images."""
    lines = [
        f'[images."{ECHO_IMAGE}"]',
        f'command = ["{sys.executable}", "{ECHO_PROGRAM}"]',
        f'[images."{ECHO_ASGI_IMAGE}"]',
        f'command = ["{sys.executable}", "{ECHO_ASGI_PROGRAM}"]',
        f'[images."{STALL_IMAGE}"]',
        f'command = ["{sys.executable}", "{STALL_PROGRAM}"]',
        f'[images."{STREAM_IMAGE}"]',
        f'command = ["{sys.executable}", "{STREAM_PROGRAM}"]',
    ]
    for image, python in (extra or {}).items():
        lines += [f'[images."{image}"]', f'python = "{python}"']
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class PolyhostServer:
    """`python -m polyhost serve` on a free port, its state in `work`, access log off."""

    work: Path
    cpus: str | None = None
    extra_args: list[str] = field(default_factory=list)
    port: int = 0
    service: Service | None = None
    # (access key, secret) that control-plane calls sign with: a server with --auth-file
    # accepts only its principals' keys.
    credentials: tuple[str, str] | None = None
    admin_port: int = 0  # the admin listener (/metrics), on a free port of its own

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def invocations_url(self, endpoint: str) -> str:
        return f"{self.url}/endpoints/{endpoint}/invocations"

    def start(self) -> PolyhostServer:
        self.port = self.port or free_port()
        self.admin_port = self.admin_port or free_port()
        # Fresh state every time: a benchmark measures creating endpoints, not restoring them.
        shutil.rmtree(self.work / "state", ignore_errors=True)
        images = write_image_config(self.work / "images.toml")
        command = [
            sys.executable,
            "-m",
            "polyhost",
            "serve",
            "--port",
            str(self.port),
            "--state-dir",
            str(self.work / "state"),
            "--image-config",
            str(images),
            "--no-access-log",
            "--stop-grace",
            "5",
            "--admin-port",
            str(self.admin_port),
            "--log-level",
            "warning",
            *self.extra_args,
        ]
        self.service = Service("polyhost", pinned(command, self.cpus), self.work / "polyhost.log")
        self.service.start()
        self.service.wait_http(self.url + "/ping", timeout=60)
        return self

    def stop(self) -> None:
        if self.service is None or self.service.process is None:
            return
        with contextlib.suppress(psutil.Error):
            leftovers = psutil.Process(self.service.pid).children(recursive=True)
        self.service.stop(grace=30)
        for child in leftovers:  # containers live in their own process groups
            with contextlib.suppress(psutil.Error):
                child.kill()

    def __enter__(self) -> PolyhostServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def rss(self) -> tuple[int, int]:
        """(server RSS, server plus every container process), in bytes."""
        assert self.service is not None
        return self.service.rss()

    def sagemaker(self) -> Any:
        keys: dict[str, str] = {}
        if self.credentials is not None:
            keys = {
                "aws_access_key_id": self.credentials[0],
                "aws_secret_access_key": self.credentials[1],
            }
        return boto3.client(
            "sagemaker",
            endpoint_url=self.url,
            region_name=REGION,
            **keys,
            config=Config(retries={"max_attempts": 1}, read_timeout=120),
        )

    def deploy(
        self,
        name: str,
        containers: list[dict[str, Any]],
        mode: str | None = None,
        instances: int = 1,
        timeout: float = 300.0,
    ) -> float:
        """CreateModel + CreateEndpointConfig + CreateEndpoint; seconds from CreateEndpoint to
        InService (DescribeEndpoint polled every 10 ms). StartFailed with the reason if Failed."""
        client = self.sagemaker()
        model: dict[str, Any] = {"ModelName": name, "ExecutionRoleArn": ROLE}
        if len(containers) == 1 and mode is None:
            model["PrimaryContainer"] = containers[0]
        else:
            model["Containers"] = containers
        if mode is not None:
            model["InferenceExecutionConfig"] = {"Mode": mode}
        client.create_model(**model)
        client.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InitialInstanceCount": instances,
                    "InstanceType": "ml.m5.large",
                }
            ],
        )
        started = time.perf_counter()
        client.create_endpoint(EndpointName=name, EndpointConfigName=name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = client.describe_endpoint(EndpointName=name)
            if status["EndpointStatus"] == "InService":
                return time.perf_counter() - started
            if status["EndpointStatus"] not in ("Creating", "Updating"):
                raise StartFailed(
                    f"endpoint {name} is {status['EndpointStatus']}: "
                    f"{status.get('FailureReason', '')}"
                )
            time.sleep(0.01)
        raise StartFailed(f"endpoint {name} not InService within {timeout:g} s")

    def delete(self, name: str, timeout: float = 60.0) -> None:
        """DeleteEndpoint and wait until it is gone, so the next measurement starts clean."""
        client = self.sagemaker()
        client.delete_endpoint(EndpointName=name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                client.describe_endpoint(EndpointName=name)
            except client.exceptions.ClientError:
                return
            time.sleep(0.02)


def echo_containers(count: int, prefix: str = "echo") -> list[dict[str, Any]]:
    """`count` light echo containers with hostnames PREFIX1..PREFIXn."""
    return [
        {"Image": ECHO_IMAGE, "ContainerHostname": f"{prefix}{index}"}
        for index in range(1, count + 1)
    ]


@contextlib.contextmanager
def stack_endpoint(
    work: Path,
    name: str,
    image: str,
    model_url: str,
    instances: int = 1,
    environment: dict[str, str] | None = None,
) -> Iterator[tuple[PolyhostServer, str]]:
    """A polyhost server with one endpoint of a built-in stack; yields it and the invoke URL."""
    with PolyhostServer(work) as server:
        container: dict[str, Any] = {"Image": image, "ModelDataUrl": model_url}
        if environment:
            container["Environment"] = environment
        server.deploy(name, [container], instances=instances)
        yield server, server.invocations_url(name)
