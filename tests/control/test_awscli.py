"""A representative flow through the `aws` CLI, unmodified, pointed at polyhost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.control.helpers import unique
from tests.support.server import ACCOUNT, ECHO_IMAGE, REGION, PolyhostProcess

AWS = Path(sys.executable).parent / "aws"


def aws(server: PolyhostProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_PAGER": "",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    return subprocess.run(
        [str(AWS), "sagemaker", *args, "--endpoint-url", server.url, "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def ok(server: PolyhostProcess, *args: str) -> Any:
    done = aws(server, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def test_cli_flow(server: PolyhostProcess) -> None:
    """Create, list, delete and wait, plus an error: each `aws` start costs a second, so few."""
    model, config, endpoint = unique("climodel"), unique("cliconfig"), unique("cliep")
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"
    created = ok(
        server,
        "create-model",
        "--model-name",
        model,
        "--primary-container",
        f"Image={ECHO_IMAGE},Environment={{ECHO_NAME=cli}}",
    )
    assert created == {"ModelArn": f"{arn}:model/{model}"}
    ok(
        server,
        "create-endpoint-config",
        "--endpoint-config-name",
        config,
        "--production-variants",
        f"VariantName=AllTraffic,ModelName={model},InitialInstanceCount=1,InitialVariantWeight=1",
    )
    ok(server, "create-endpoint", "--endpoint-name", endpoint, "--endpoint-config-name", config)
    listed = ok(server, "list-endpoints", "--name-contains", endpoint)
    assert [e["EndpointName"] for e in listed["Endpoints"]] == [endpoint]
    assert listed["Endpoints"][0]["EndpointStatus"] in ("Creating", "InService")

    ok(server, "delete-endpoint", "--endpoint-name", endpoint)
    ok(server, "wait", "endpoint-deleted", "--endpoint-name", endpoint)

    missing = aws(server, "describe-endpoint", "--endpoint-name", endpoint)
    assert missing.returncode != 0
    assert (
        "An error occurred (ValidationException) when calling the DescribeEndpoint operation: "
        f'Could not find endpoint "{arn}:endpoint/{endpoint}".'
    ) in missing.stderr
