"""How many client connections the listener may hold without starving the rest of the server.

Every client connection is a file descriptor, and so is everything else the server needs to
keep working: container pipes and log files, upstream sockets to the containers, the SQLite
database and its WAL, model downloads. When clients take the last descriptor, `accept` fails,
other clients see resets and the server cannot even open a log file to say why. So the
listener's connection cap is bounded by the process's RLIMIT_NOFILE less a reserve that only
the rest of the server (and a future admin listener) may use.

At start the soft limit is raised to the hard limit when the system allows it: many systems
default to a soft limit of 1024 with a much higher hard limit, which a server should use.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger("polyhost.http")

# A soft limit of "unlimited" is refused for RLIMIT_NOFILE (the kernel's nr_open caps it); aim
# at the kernel's usual nr_open instead.
_UNLIMITED_TARGET = 1 << 20
# Never fewer than this many descriptors for the rest of the server.
MIN_RESERVE = 64


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit if allowed; returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as error:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, error)
    return _UNLIMITED_TARGET if soft == resource.RLIM_INFINITY else soft


def reserve_for(limit: int) -> int:
    """Descriptors kept back from clients: a quarter of the limit, never fewer than 64."""
    return max(MIN_RESERVE, limit // 4)


def connection_capacity(requested: int, limit: int) -> int:
    """The most client connections to hold: `requested`, unless the descriptor limit says less.

    At least one, so a server on a starved limit still answers someone rather than no one.
    """
    return max(1, min(requested, limit - reserve_for(limit)))


def listener_capacity(requested: int) -> int:
    """Raise the open-file limit, then the connection cap it allows; logs when that is lower."""
    limit = raise_open_file_limit()
    capacity = connection_capacity(requested, limit)
    if capacity < requested:
        log.warning(
            "holding at most %d client connections, not %d (--max-connections): the open-file "
            "limit is %d and %d descriptors are kept for containers, logs and the database; "
            "raise `ulimit -n` to allow more",
            capacity,
            requested,
            limit,
            reserve_for(limit),
        )
    return capacity
