"""The SageMaker Python SDK (2.x) drives polyhost unchanged: deploy, predict, pipeline, delete."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.endpoints import deploy, echo_container
from tests.support.server import ECHO_IMAGE, PolyhostProcess

SDK_PYTHON = os.environ.get("POLYHOST_SDK_PYTHON")


@pytest.mark.skipif(
    not SDK_PYTHON, reason="the SDK's venv is made by `make test` (POLYHOST_SDK_PYTHON)"
)
def test_sdk_deploy_predict_pipeline_and_delete(server: PolyhostProcess, sagemaker: Any) -> None:
    assert SDK_PYTHON is not None
    deploy(sagemaker, "sdk-direct", [echo_container("a"), echo_container("b")], mode="Direct")
    script = Path(__file__).with_name("sagemaker_sdk_flow.py")
    result = subprocess.run(
        [SDK_PYTHON, str(script), server.url, ECHO_IMAGE],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "SAGEMAKER_SUPPRESS_V2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # The SDK prints a "!" progress mark on stdout while it waits for InService.
    lines = [line.lstrip("-!") for line in result.stdout.splitlines()]
    assert "single single:hello" in lines
    assert "pipeline second:first:x" in lines
    assert "direct b:x" in lines
    assert "deleted" in lines
    for name in ("sdk-single", "sdk-pipeline"):
        with pytest.raises(ClientError, match="Could not find endpoint"):
            sagemaker.describe_endpoint(EndpointName=name)
