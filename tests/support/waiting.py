"""Wait for an event instead of sleeping for a guessed time.

The deadline only keeps a broken build from hanging: it is generous on purpose, so that a loaded
machine makes a test slower, never red.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

GENEROUS_S = 60.0


def eventually(
    probe: Callable[[], T | None],
    what: str,
    timeout: float = GENEROUS_S,
    interval: float = 0.01,
) -> T:
    """Poll `probe` until it answers something truthy, and return that; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting after {timeout:g} s for {what}")
        time.sleep(interval)


def count_files(folder: Path) -> int:
    return sum(1 for _ in folder.iterdir())
