"""Fixtures: a real polyhost server process per test module, and boto3 clients for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import PolyhostProcess, write_image_config


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolyhostProcess]:
    """One server per test module, with the test images registered."""
    base: Path = tmp_path_factory.mktemp("polyhost")
    image_config = write_image_config(base / "images.toml")
    proc = PolyhostProcess(state_dir=base / "state", image_config=image_config).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def sagemaker(server: PolyhostProcess) -> Any:
    return server.sagemaker()


@pytest.fixture(scope="module")
def runtime(server: PolyhostProcess) -> Any:
    return server.runtime()
