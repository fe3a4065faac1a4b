"""Wait for an event instead of sleeping for a guessed time.

The deadline only keeps a broken build from hanging: it is generous on purpose, so that a loaded
machine makes a test slower, never red.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, overload

T = TypeVar("T")

GENEROUS_S = 60.0


@overload
def eventually(
    probe: Callable[[], T | None],
    what: str,
    timeout: float = ...,
    interval: float = ...,
) -> T: ...


@overload
def eventually(
    probe: Callable[[], T],
    what: str,
    timeout: float = ...,
    interval: float = ...,
    *,
    until: Callable[[T], bool],
) -> T: ...


def eventually(
    probe: Callable[[], T | None],
    what: str,
    timeout: float = GENEROUS_S,
    interval: float = 0.01,
    *,
    until: Callable[[T], bool] | None = None,
) -> T | None:
    """Poll `probe` until it answers something truthy, and return that; fail after `timeout`.

    With `until`, poll until `until(answer)` holds instead (and return that answer, whatever
    its truth); the failure then shows the last answer.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        done = value if until is None else until(value)  # type: ignore[arg-type]
        if done:
            return value
        if time.monotonic() > deadline:
            last = f"; the last answer was {value!r}" if until is not None else ""
            raise AssertionError(f"still waiting after {timeout:g} s for {what}{last}")
        time.sleep(interval)


async def eventually_async(
    condition: Callable[[], Any], what: str, within_s: float = 20.0, interval: float = 0.005
) -> Any:
    """`eventually` inside an event loop: the loop runs on while it waits (for in-process tests
    whose condition is made true by tasks on the same loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        value = condition()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"still waiting after {within_s:g} s for {what}")
        await asyncio.sleep(interval)


def count_files(folder: Path) -> int:
    return sum(1 for _ in folder.iterdir())
