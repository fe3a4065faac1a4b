"""The queue and the worker in process: RequestTTLSeconds is at least a minute on the wire, so
expiry is tested here with a clock the test moves."""

from __future__ import annotations

import asyncio
from pathlib import Path

from polyhost.asyncinf.queue import AsyncQueue, AsyncRequest
from polyhost.asyncinf.storage import OutputStore
from polyhost.asyncinf.worker import AsyncWorker
from polyhost.router.router import Router
from polyhost.settings import Settings


class Recorded(OutputStore):
    def __init__(self) -> None:
        super().__init__(1.0)
        self.written: dict[str, bytes] = {}

    def put(self, location: str, body: bytes, content_type: str, role: str | None = None) -> None:
        self.written[location] = body

    def exists(self, location: str, role: str | None = None) -> bool:
        return location in self.written


def request(inference_id: str, now: float, ttl: float = 60.0) -> AsyncRequest:
    return AsyncRequest(
        endpoint="ep",
        inference_id=inference_id,
        input_location="s3://b/in",
        content_type=None,
        accept=None,
        custom_attributes=None,
        received=now,
        expires=now + ttl,
        timeout_s=10.0,
        output_location=f"s3://b/out/{inference_id}.out",
        failure_location=f"s3://b/out/{inference_id}-error.out",
    )


def test_an_expired_request_fails_with_its_reason(tmp_path: Path) -> None:
    queue = AsyncQueue(tmp_path / "async.db", max_per_endpoint=10)
    now = [1000.0]
    outputs = Recorded()
    worker = AsyncWorker(
        queue, Router(Settings(state_dir=tmp_path)), Settings(state_dir=tmp_path),
        outputs=outputs, clock=lambda: now[0],
    )  # fmt: skip
    queue.add(request("late", now[0]))

    async def run() -> None:
        worker.start(asyncio.get_running_loop())
        await asyncio.sleep(0.6)  # the endpoint does not serve: the request waits
        assert outputs.written == {}
        now[0] += 61
        for _ in range(100):
            if outputs.written:
                break
            await asyncio.sleep(0.05)
        await worker.stop()

    asyncio.run(run())
    reason = outputs.written["s3://b/out/late-error.out"].decode()
    assert "RequestTTLSeconds (60 seconds)" in reason
    assert queue.state("ep", "late") == ("failed", reason)


def test_an_inference_id_is_one_request_and_the_queue_is_bounded(tmp_path: Path) -> None:
    queue = AsyncQueue(tmp_path / "async.db", max_per_endpoint=2)
    first = queue.add(request("a", 0.0))
    again = queue.add(request("a", 5.0))
    assert again.seq == first.seq and again.received == 0.0
    queue.add(request("b", 0.0))
    try:
        queue.add(request("c", 0.0))
    except Exception as error:
        assert type(error).__name__ == "QueueFull"
    else:
        raise AssertionError("a third request was queued past the bound")


def test_a_request_running_at_a_crash_is_queued_again_as_recovered(tmp_path: Path) -> None:
    queue = AsyncQueue(tmp_path / "async.db", max_per_endpoint=10)
    queue.add(request("a", 0.0))
    queue.add(request("b", 0.0))
    assert [r.inference_id for r in queue.take("ep", 1, 0.0)] == ["a"]
    queue.close()  # as a crash leaves it: "a" running
    reopened = AsyncQueue(tmp_path / "async.db", max_per_endpoint=10)
    taken = reopened.take("ep", 5, 0.0)
    assert [(r.inference_id, r.recovered) for r in taken] == [("a", True), ("b", False)]
