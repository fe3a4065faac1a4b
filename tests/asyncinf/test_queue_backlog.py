"""The queue's backlog count, read by the backlog metrics and the dashboard: what is queued or
running counts, per endpoint, with the oldest one's acceptance time; what finished does not."""

from __future__ import annotations

from pathlib import Path

from polyhost.asyncinf.queue import AsyncQueue
from tests.asyncinf.test_queue import request


def test_the_backlog_counts_queued_and_running_requests_per_endpoint(tmp_path: Path) -> None:
    queue = AsyncQueue(tmp_path / "async.db", max_per_endpoint=100)
    assert queue.backlog() == {}
    for name, received in (("a", 10.0), ("b", 12.0), ("c", 11.0), ("d", 20.0)):
        queue.add(request(name, received))
    other = request("x", 5.0)
    queue.add(type(other)(**{**other.__dict__, "endpoint": "other"}))
    assert queue.backlog() == {"ep": (4, 10.0), "other": (1, 5.0)}
    running = queue.take("ep", 2, 100.0)  # a and b run: still the backlog, as on SageMaker
    assert queue.backlog()["ep"] == (4, 10.0)
    queue.finish(running[0].seq, True)  # a is answered: the oldest left is c
    queue.finish(running[1].seq, False, "failed")
    assert queue.backlog() == {"ep": (2, 11.0), "other": (1, 5.0)}
    (rest,) = queue.take("other", 1, 100.0)
    queue.finish(rest.seq, True)
    assert queue.backlog() == {"ep": (2, 11.0)}
