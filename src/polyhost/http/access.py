"""The access log: one line per request, the same shape from every path that serves one."""

from __future__ import annotations

import logging
import time

access_log = logging.getLogger("polyhost.access")


def log_request(
    client: str, method: str, path: str, what: str, status: int, started: float
) -> None:
    """`what` is the control operation or the endpoint invoked; `started` a perf_counter()."""
    access_log.info(
        '%s "%s %s" %s %d %.1fms',
        client,
        method,
        path,
        what or "-",
        status,
        (time.perf_counter() - started) * 1000,
    )
