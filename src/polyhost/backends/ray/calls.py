"""Calling Ray from the server's event loop: blocking calls on threads of their own, object
references awaited on any loop, and the message of an error raised on the other side.

Ray's blocking calls (GCS look-ups, kills, placement group removal) run on RAY_CALLS, not on
the loop's default executor: one that blocks while a node is being lost must not hold up the
server's other threaded work (status reports, the control plane).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

_T = TypeVar("_T")

RAY_CALLS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ray-call")


async def ray_call(function: Callable[..., _T], *args: Any) -> _T:
    return await asyncio.get_running_loop().run_in_executor(RAY_CALLS, function, *args)


async def awaited(ref: Any) -> Any:
    """Await a Ray ObjectRef on any event loop (uvloop included)."""
    return await asyncio.wrap_future(ref.future())


def cause(error: BaseException) -> str:
    """The message of the error a Ray call raised on the other side, without Ray's traceback."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return str(cause) or type(cause).__name__
    return first_line(error)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
