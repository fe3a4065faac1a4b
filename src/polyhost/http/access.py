"""The access log: one line per request, the same shape from every path that serves one.

Every value in a line that a caller chose (path, operation name, endpoint name) goes through
`loggable`, so a caller can neither grow a log line past a few hundred bytes (a 5 MiB
X-Amz-Target once made a 5 MB line) nor forge lines with control characters.
"""

from __future__ import annotations

import logging
import time

access_log = logging.getLogger("polyhost.access")

MAX_LOGGED_CHARS = 200


def loggable(value: str, limit: int = MAX_LOGGED_CHARS) -> str:
    """`value` as it may appear in a log: control characters escaped, cut to about `limit`
    characters with an ellipsis and the original length, so a reader knows it was cut."""
    cut = value[:limit]
    if not cut.isprintable():
        cut = cut.encode("unicode_escape").decode("ascii")[:limit]
    if len(value) > limit:
        return f"{cut}…({len(value)} chars)"
    return cut


def log_request(
    client: str, method: str, path: str, what: str, status: int, started: float
) -> None:
    """`what` is the control operation or the endpoint invoked; `started` a perf_counter()."""
    access_log.info(
        '%s "%s %s" %s %d %.1fms',
        client,
        loggable(method, 20),
        loggable(path),
        loggable(what) if what else "-",
        status,
        (time.perf_counter() - started) * 1000,
    )
